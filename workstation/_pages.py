"""Large arrays in ordinary 4 KB pages rather than transparent huge pages.

numpy asks Linux for transparent huge pages (``madvise``) on every array of 4 MB or more.  Under the THP
defrag policy Debian ships ("madvise"), a page fault in such an array can wait while the kernel compacts
memory to find a free 2 MB page.  After an AI run has freed its large tensors, memory is fragmented and those
stalls made the copies around inference take 1.5-3 times as long, differently each run (brain extraction's
pre-processing on the 7 T head: 0.21-0.47 s with huge pages, 0.20-0.22 s without; the same copies alone,
outside the pipeline, 0.14 s either way).  With small pages large-array work is steady.
Setting NUMPY_MADVISE_HUGEPAGE in the environment keeps whatever it says (numpy reads it itself).
"""

from __future__ import annotations

import os


def keep_small_pages() -> None:
    """Turn numpy's huge-page advice off for this process, unless the environment decides it."""
    if "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        return
    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:
        try:
            from numpy.core.multiarray import _set_madvise_hugepage  # numpy 1.x
        except ImportError:
            return
    _set_madvise_hugepage(False)

"""Process-wide settings of the numeric libraries, made once when the workstation package is imported.

**Small pages.**  numpy asks Linux for transparent huge pages (``madvise``) on every array of 4 MB or more.
Under the THP defrag policy Debian ships ("madvise"), a page fault in such an array can wait while the kernel
compacts memory to find a free 2 MB page.  After an AI run has freed its large tensors, memory is fragmented
and those stalls made the copies around inference take 1.5-3 times as long, differently each run (brain
extraction's pre-processing on the 7 T head: 0.21-0.47 s with huge pages, 0.20-0.22 s without; the same
copies alone, outside the pipeline, 0.14 s either way).  ``NUMPY_MADVISE_HUGEPAGE`` in the environment
keeps whatever it says (numpy reads it itself).

**One BLAS thread.**  numpy's OpenBLAS runs a matrix product or a long dot product on every core, and its
worker threads then spin, busy-waiting for more work, for a while after each call: on a 2-core machine they
took a core from onnxruntime's threads during the inference that followed (brain extraction: inference
2.21 s against 2.10 s for the bare session; with one BLAS thread, 2.18 against 2.18) and from the archive
server streaming to us.  The workstation's own numpy products are small (region statistics, sums of squares);
the heavy work runs in onnxruntime, ITK and VTK, each with its own threads.  When the workstation is what
imports numpy, OpenBLAS is told so as it loads, and starts no worker thread at all (a worker spins for
~0.1 s of a core after it starts: 80 ms of CPU during start-up); the variable is removed again at once, so
processes the workstation starts do not inherit it.  ``OPENBLAS_NUM_THREADS`` or ``OMP_NUM_THREADS`` in
the environment keeps what it says.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path


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


#: the thread-count setters of the OpenBLAS builds numpy wheels bundle (scipy-openblas, 64-bit interface
#: first) and of a system OpenBLAS
_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads64_",
            "openblas_set_num_threads")


def single_thread_blas() -> bool:
    """Run numpy's BLAS on the calling thread only (True when an OpenBLAS was found and set)."""
    if _user_chose_threads():
        return False
    import numpy

    folders = [Path(numpy.__file__).parent.parent / "numpy.libs", Path(numpy.__file__).parent / ".dylibs"]
    for folder in folders:
        for library in sorted(folder.glob("*openblas*")) if folder.is_dir() else ():
            try:
                lib = ctypes.CDLL(str(library))  # already loaded by numpy: the same copy is returned
            except OSError:
                continue
            for name in _SETTERS:
                setter = getattr(lib, name, None)
                if setter is not None:
                    setter(1)
                    return True
    return False


def _user_chose_threads() -> bool:
    return "OPENBLAS_NUM_THREADS" in os.environ or "OMP_NUM_THREADS" in os.environ


def import_numpy_without_blas_workers() -> None:
    """Import numpy with OpenBLAS reading a thread count of one as it loads (see the module docstring);
    nothing when numpy is imported already or the environment sets a count."""
    if "numpy" in sys.modules or _user_chose_threads():
        return
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        import numpy  # noqa: F401
    finally:
        os.environ.pop("OPENBLAS_NUM_THREADS", None)


def configure() -> None:
    import_numpy_without_blas_workers()
    keep_small_pages()
    single_thread_blas()

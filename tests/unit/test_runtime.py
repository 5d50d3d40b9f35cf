"""Process-wide numeric settings made on importing the workstation: small pages, one BLAS thread."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import ctypes, json
import workstation
import numpy
from pathlib import Path
from numpy._core.multiarray import _set_madvise_hugepage
huge = _set_madvise_hugepage(True)  # returns the setting it replaces
threads = None
for lib in sorted((Path(numpy.__file__).parent.parent / "numpy.libs").glob("*openblas*")):
    get = getattr(ctypes.CDLL(str(lib)), "scipy_openblas_get_num_threads64_", None)
    if get is not None:
        threads = get()
import os
print(json.dumps({"huge": huge, "threads": threads, "tasks": len(os.listdir("/proc/self/task")),
                  "env": os.environ.get("OPENBLAS_NUM_THREADS")}))
"""


def _probe(**env: str) -> dict:
    import json

    clean = {k: v for k, v in os.environ.items()
             if k not in ("NUMPY_MADVISE_HUGEPAGE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env={**clean, **env},
                         timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_workstation_turns_huge_pages_off_and_blas_to_one_thread():
    got = _probe()
    assert got["huge"] is False
    assert got["threads"] in (1, None)  # None: a numpy without the bundled OpenBLAS (nothing to set)
    assert got["tasks"] == 1 and got["env"] is None  # no BLAS worker started; nothing left for children


def test_the_environment_keeps_its_own_choice():
    got = _probe(NUMPY_MADVISE_HUGEPAGE="1", OPENBLAS_NUM_THREADS="2")
    assert got["huge"] is True
    assert got["threads"] in (2, None) and got["env"] == "2"

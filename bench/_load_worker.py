"""One loader, one series, in a fresh process: prints JSON with times (s) and peak RSS (MiB).

Usage: python bench/_load_worker.py LOADER DICOM_DIR
LOADER: workstation | workstation-cached | pydicom | simpleitk | baseline (imports only, for the
empty process's memory).  workstation-cached keeps a PlanCache in a temporary folder that the warm-up
run fills, so the measured run reads its headers from the cache; workstation reads every header.
"""

from __future__ import annotations

import atexit
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cache():
    from workstation.dicom.plan_cache import PlanCache

    if not hasattr(_cache, "cache"):
        tmp = tempfile.mkdtemp(prefix="plan-cache-")
        atexit.register(shutil.rmtree, tmp, True)
        _cache.cache = PlanCache(tmp)
    return _cache.cache


def load_workstation(folder: Path, cached: bool = False) -> dict:
    from workstation.dicom.series import examine, load_volume

    t0 = time.perf_counter()
    first: list[float] = []
    files = sorted(folder.iterdir())
    plans, _ = _cache().examine_cached(files) if cached else examine(files)
    plan = max(plans, key=lambda p: len(p.files))

    def on_slice(done: int, total: int) -> None:
        if not first:
            first.append(time.perf_counter() - t0)

    vol = load_volume(plan, on_slice=on_slice)
    total = time.perf_counter() - t0
    return {"first": first[0] if first else total, "full": total, "shape": list(vol.shape),
            "dtype": str(vol.voxels.dtype), "nbytes": vol.nbytes}


def load_pydicom(folder: Path) -> dict:
    import numpy as np
    import pydicom

    t0 = time.perf_counter()
    slices = []
    first = None
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f)
        arr = ds.pixel_array
        if first is None:
            first = time.perf_counter() - t0
        slices.append((float(ds.ImagePositionPatient[2]), arr))
    slices.sort(key=lambda s: s[0])
    vol = np.stack([s[1] for s in slices])
    total = time.perf_counter() - t0
    return {"first": first, "full": total, "shape": list(vol.shape), "dtype": str(vol.dtype), "nbytes": vol.nbytes}


def load_simpleitk(folder: Path) -> dict:
    import SimpleITK as sitk

    t0 = time.perf_counter()
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    img = reader.Execute()
    arr = sitk.GetArrayViewFromImage(img)
    total = time.perf_counter() - t0
    return {"first": total, "full": total, "shape": list(arr.shape), "dtype": str(arr.dtype), "nbytes": arr.nbytes}


def baseline(folder: Path) -> dict:
    import numpy  # noqa: F401
    import pydicom  # noqa: F401

    import workstation.dicom.series  # noqa: F401

    return {"first": 0.0, "full": 0.0}


def main() -> None:
    loader, folder = sys.argv[1], Path(sys.argv[2])
    fn = {"workstation": load_workstation, "workstation-cached": lambda f: load_workstation(f, cached=True),
          "pydicom": load_pydicom, "simpleitk": load_simpleitk,
          "baseline": baseline}[loader]
    if loader != "baseline":
        fn(folder)  # warm the page cache and lazy imports once
    before = _peak_mib()
    result = fn(folder)
    result["peak_rss_mib"] = _peak_mib()
    result["rss_before_mib"] = before
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Series loading: the workstation's loader against a plain pydicom loop, SimpleITK and dcm2niix.

Warm page cache, each loader in its own fresh process (so peak memory is its own), median of 3 runs.
Prints a table per series: the workstation twice (header cache warm; cold folder, every header read
first), then the peers, with first-image/full-load ratios and each peer's full load over this row's.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _common import case_dir, print_table, run_json

CASES = [("LIDC 0001 chest CT", "ct-chest-lidc-0001"), ("7 T MR head", "mr-head-t1-7t")]
REPEATS = 3


def _worker(loader: str, folder: Path) -> dict:
    runs = [run_json([str(Path(__file__).with_name("_load_worker.py")), loader, str(folder)]) for _ in range(REPEATS)]
    med = {k: statistics.median(r[k] for r in runs) for k in ("first", "full", "peak_rss_mib")}
    return {**runs[0], **med}


def _dcm2niix(folder: Path) -> dict | None:
    exe = shutil.which("dcm2niix")
    if exe is None:
        return None
    times = []
    for _ in range(REPEATS + 1):
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            subprocess.run([exe, "-z", "n", "-b", "n", "-o", out, str(folder)], capture_output=True, check=True)
            times.append(time.perf_counter() - t0)
    t = statistics.median(times[1:])
    return {"first": t, "full": t, "peak_rss_mib": float("nan")}


def _row(name: str, r: dict | None, base: float, vol_mib: float, peers: dict) -> list[object]:
    if r is None:
        return [name] + ["n/a"] * 6 + ["not installed"]
    extra = r["peak_rss_mib"] - base
    ratio = [peers[p]["full"] / r["full"] if peers.get(p) else "n/a" for p in ("sitk", "dcm2niix")]
    return [name, r["first"] * 1000, r["full"] * 1000, r["first"] / r["full"], *ratio,
            extra, f"{extra / vol_mib:.2f}x volume" if extra == extra else "-"]


def bench_case(title: str, folder: Path) -> None:
    base = run_json([str(Path(__file__).with_name("_load_worker.py")), "baseline", str(folder)])["peak_rss_mib"]
    ours = [("workstation (header cache warm)", _worker("workstation-cached", folder)),
            ("workstation (cold folder: headers first)", _worker("workstation", folder))]
    peers = {"pydicom": _worker("pydicom", folder), "sitk": _worker("simpleitk", folder),
             "dcm2niix": _dcm2niix(folder)}
    names = {"pydicom": "pydicom loop", "sitk": "SimpleITK ImageSeriesReader", "dcm2niix": "dcm2niix (C, writes NIfTI)"}
    ws = ours[0][1]
    vol_mib = ws["nbytes"] / 2**20
    rows = [_row(n, r, base, vol_mib, peers) for n, r in ours]
    rows += [_row(names[k], r, base, vol_mib, peers) for k, r in peers.items()]
    print_table(f"{title}: {ws['shape']} {ws['dtype']} ({vol_mib:.0f} MiB), empty process {base:.0f} MiB RSS",
                ["loader", "first image ms", "full load ms", "first / full", "SimpleITK / this",
                 "dcm2niix / this", "peak RSS over empty MiB", "memory"], rows)
    print("\ngoals for the workstation rows: first / full <= 0.10, SimpleITK / this >= 2, "
          "dcm2niix / this >= 1, memory <= 1.5x volume")


def main() -> None:
    for title, name in CASES:
        folder = case_dir(name)
        if folder is None:
            print(f"\n## {title}: skipped, ../shared/data/{name} is absent")
            continue
        bench_case(title, folder)


if __name__ == "__main__":
    main()

"""Series loading: the workstation's loader against a plain pydicom loop, SimpleITK and dcm2niix.

Warm page cache, each loader in its own fresh process (so peak memory is its own), median of 3 runs.
Prints a table per series with times and ratios to the workstation's full-load time.
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


def bench_case(title: str, folder: Path) -> None:
    base = run_json([str(Path(__file__).with_name("_load_worker.py")), "baseline", str(folder)])["peak_rss_mib"]
    ws = _worker("workstation", folder)
    rows = []
    peers = [("workstation", ws), ("pydicom loop", _worker("pydicom", folder)),
             ("SimpleITK ImageSeriesReader", _worker("simpleitk", folder)), ("dcm2niix (C, writes NIfTI)", _dcm2niix(folder))]
    vol_mib = ws["nbytes"] / 2**20
    for name, r in peers:
        if r is None:
            rows.append([name, "n/a", "n/a", "n/a", "n/a", "not installed"])
            continue
        extra = r["peak_rss_mib"] - base
        rows.append([name, r["first"] * 1000, r["full"] * 1000, r["full"] / ws["full"],
                     extra, f"{extra / vol_mib:.2f}x volume" if extra == extra else "-"])
    print_table(f"{title}: {ws['shape']} {ws['dtype']} ({vol_mib:.0f} MiB), empty process {base:.0f} MiB RSS",
                ["loader", "first image ms", "full load ms", "full / workstation", "peak RSS over empty MiB", "memory"],
                rows)
    print(f"\nworkstation: first image = {ws['first'] / ws['full']:.2f} of full load; "
          f"goal <= 0.10. SimpleITK / workstation = {rows[2][3]:.2f} (goal >= 2); "
          f"dcm2niix / workstation = {rows[3][3] if isinstance(rows[3][3], float) else 'n/a'} (goal >= 1)")


def main() -> None:
    for title, name in CASES:
        folder = case_dir(name)
        if folder is None:
            print(f"\n## {title}: skipped, ../shared/data/{name} is absent")
            continue
        bench_case(title, folder)


if __name__ == "__main__":
    main()

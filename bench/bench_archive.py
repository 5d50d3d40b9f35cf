"""Retrieval from a real Orthanc on loopback: the workstation's WADO-RS and C-GET clients side by side with
the raw transfer of the same series by curl (one WADO-RS multipart) and by dcmtk's getscu.

Time to first image = from the call to the first complete instance in the cache (over a slow link the
workstation fetches the middle slices first; on loopback the whole series streams in before that would
help).  Every run starts from an empty cache; each round times every method once, in turn, so that a
machine busy with other work slows them alike; the median of ``RUNS`` rounds is shown, and each total as a
multiple of its raw peer's: the WADO-RS rows against curl's, the C-GET row against getscu's.

Each run's output is deleted at once, and each run writes into a folder of its own that ext4 spreads over
its block groups (the work folder is marked ``chattr +T``, as top directories are): an ext4 without a
journal, as on this machine, steps over every inode freed in the last 60-300 s, one inode-table lookup each,
when it creates a file in that block group (``recently_deleted`` in fs/ext4/ialloc.c), so the hundreds of
files the previous run deleted next door made file creation up to 30 times slower (0.01 -> 0.3 ms a file):
a cost of the benchmark, not of the method, and one that fell on the clients writing a file per instance
(the workstation, getscu) and not on curl (one file).  Keeping every output instead (a few GB) made the
later rounds slower for every method alike, curl included.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import case_dir, print_table  # noqa: E402
from tests.integration import orthanc as orthanc_mod  # noqa: E402

CASES = ("ct-chest-lidc-0001", "mr-head-t1-7t")
RUNS = int(os.environ.get("BENCH_ARCHIVE_RUNS", "5"))
CURL, GETSCU = "curl WADO-RS multipart", "dcmtk getscu"
ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def _timed_client(make, series: tuple[str, str], cache: Path) -> tuple[float, float, int]:
    """(time to first image, total seconds, bytes) of one fetch into an empty cache.

    The client and its (empty) cache index are made before the clock starts: the application makes them
    once, when the archive is chosen, not per retrieval (the index's creation alone is 2-25 ms of SQLite
    syncs on this disk).  The clock times the request: from the call to the last instance in the cache."""
    first: list[float] = []
    client = make(cache)
    start = time.perf_counter()

    def progress(p) -> None:
        if p.done >= 1 and not first:
            first.append(time.perf_counter() - start)

    paths = client.fetch_series(series[1], progress=progress, study_instance_uid=series[0])
    total = time.perf_counter() - start
    getattr(client, "close", lambda: None)()
    return (first[0] if first else total), total, sum(Path(p).stat().st_size for p in paths)


def _timed_command(argv: list[str]) -> float:
    start = time.perf_counter()
    # dcmtk turns Nagle's algorithm off only when TCP_NODELAY is set (as the Orthanc under test has it): a fair peer
    subprocess.run(argv, check=True, capture_output=True, timeout=300, env={**os.environ, "TCP_NODELAY": "1"})
    return time.perf_counter() - start


def _median_rows(label: str, samples: list[tuple[float, float, int]]) -> list[object]:
    first = statistics.median(s[0] for s in samples)
    total = statistics.median(s[1] for s in samples)
    mb = samples[0][2] / 1e6
    return [label, first if first == first else "-", total, mb, mb / total]


def bench_case(server, name: str, work: Path) -> list[list[object]]:
    from workstation.archive.credentials import BasicAuth
    from workstation.archive.dicomweb import DicomWebArchive
    from workstation.archive.dimse import DimseArchive

    folder = case_dir(name)
    server.upload(orthanc_mod.dicom_files(folder))
    web = DicomWebArchive("Orthanc", server.dicomweb_url, auth=BasicAuth(*server.auth))
    series = None  # the uploaded series, recognised by its number of instances
    for st in web.find_studies():
        for se in web.find_series(st.study_instance_uid):
            if se.number_of_instances == len(orthanc_mod.dicom_files(folder)):
                series = (st.study_instance_uid, se.series_instance_uid)
    assert series is not None, f"{name}: series not found in Orthanc"
    makers = {
        "workstation WADO-RS": lambda c: DicomWebArchive("Orthanc", server.dicomweb_url, auth=BasicAuth(*server.auth),
                                                         cache_dir=c),
        "workstation WADO-RS, middle first": lambda c: DicomWebArchive(
            "Orthanc", server.dicomweb_url, auth=BasicAuth(*server.auth), cache_dir=c, list_after=0),
        "workstation C-GET": lambda c: DimseArchive("Orthanc", "127.0.0.1", server.dicom_port, "ORTHANC",
                                                    "WORKSTATION", cache_dir=c),
    }
    url = f"{server.dicomweb_url}/studies/{series[0]}/series/{series[1]}"
    commands = {
        CURL: lambda out: ["curl", "-sf", "-u", ":".join(server.auth), "-H", f"Accept: {ACCEPT}",
                           "-o", str(out / "series.multipart"), url],
        GETSCU: lambda out: ["getscu", "-aet", "WORKSTATION", "-aec", "ORTHANC", "-S", "-k",
                             "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={series[0]}", "-k",
                             f"SeriesInstanceUID={series[1]}", "-od", str(out), "127.0.0.1",
                             str(server.dicom_port)],
    }
    nbytes = sum(p.stat().st_size for p in orthanc_mod.dicom_files(folder))
    samples: dict[str, list[tuple[float, float, int]]] = {label: [] for label in [*makers, *commands]}
    commands = {label: argv for label, argv in commands.items() if shutil.which(argv(work)[0]) is not None}
    for run in range(RUNS + 1):  # the first round warms Orthanc's caches and is not counted
        # one sample of every method per round: a machine busy with other work slows them alike
        for label, make in makers.items():
            cache = work / f"{name}-{label}-{run}".replace(" ", "_").replace(",", "")
            sample = _timed_client(make, series, cache)
            shutil.rmtree(cache, ignore_errors=True)
            if run:
                samples[label].append(sample)
        for label, argv in commands.items():
            out = work / f"{name}-{label}-{run}".replace(" ", "_")
            out.mkdir()
            seconds = _timed_command(argv(out))
            shutil.rmtree(out, ignore_errors=True)
            if run:
                samples[label].append((float("nan"), seconds, nbytes))
    peers = {label: statistics.median(s[1] for s in samples[label]) for label in (CURL, GETSCU) if samples[label]}
    rows = []
    for label, got in samples.items():
        if got:
            row = _median_rows(label, got)
            peer = None if label in (CURL, GETSCU) else GETSCU if "C-GET" in label else CURL
            ratio = row[2] / peers[peer] if peer in peers else "-"
            rows.append([name, *row, peer or "-", ratio])
    return rows


def main() -> None:
    reason = orthanc_mod.orthanc_available()
    cases = [c for c in CASES if case_dir(c) is not None]
    if reason or not cases:
        print(f"bench_archive skipped: {reason or 'no shared data'}")
        return
    with tempfile.TemporaryDirectory(prefix="bench-archive-") as tmp:
        work = Path(tmp)
        # spread the runs' folders over block groups (see the module docstring); harmless where unsupported
        subprocess.run(["chattr", "+T", str(work)], capture_output=True, check=False)
        server = orthanc_mod.OrthancServer(work / "orthanc", {"WORKSTATION": orthanc_mod.free_port()})
        server.start()
        try:
            rows = [row for c in cases for row in bench_case(server, c, work)]
        finally:
            server.stop()
    print_table(f"Retrieval from Orthanc on loopback (median of {RUNS}, cold workstation cache)",
                ["case", "method", "first image s", "total s", "MB", "MB/s", "raw peer", "total / peer"], rows)


if __name__ == "__main__":
    main()

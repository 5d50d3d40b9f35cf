"""Labelling I/O on the LIDC chest CT (133 x 512 x 512): SEG encode and decode, sync to Orthanc, dataset export.

* SEG: a 4-segment label map on the CT's grid (lung, fat, soft tissue, bone by HU, so nearly every frame
  of every segment holds something: the hard case), encoded as BINARY and LABELMAP by the workstation,
  side by side with a plain highdicom call on the same array (the peer); decoded by ``read_seg`` and by
  highdicom's own ``segread`` + ``get_volume``.  Goal: encode under 1 s.
* Sync: that SEG through the outbox and worker (STOW-RS) to an Orthanc on loopback, next to dcmtk's
  storescu (C-STORE) and a bare REST POST of the same file.
* Export: ``export-dataset`` of the LIDC case (4 readers' SEG + SR in Orthanc) to nnU-Net v2, cold cache,
  next to dcm2niix converting the same series to NIfTI (the image half of the job).

Median of ``RUNS`` runs.  Run: ``.venv/bin/python bench/bench_labels.py``.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import SHARED_DATA, case_dir, print_table  # noqa: E402

RUNS = 3


def _median(fn, runs: int = RUNS) -> float:
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def _labelmap(volume):
    import numpy as np

    from workstation.model.labelmap import Code, LabelMap, Segment

    hu = volume.voxels
    labels = np.zeros(volume.shape, np.uint8)
    labels[(hu > -950) & (hu < -400)] = 1
    labels[(hu >= -150) & (hu < -50)] = 2
    labels[(hu >= -50) & (hu < 150)] = 3
    labels[hu >= 300] = 4
    tissue = Code("85756007", "SCT", "Tissue")
    names = [("Lung", "39607008"), ("Fat", "248300009"), ("Soft tissue", "87784001"), ("Bone", "272673000")]
    segments = tuple(Segment(n, name, (60 * n, 255 - 50 * n, 120), tissue, Code(code, "SCT", name))
                     for n, (name, code) in enumerate(names, start=1))
    return LabelMap.on_grid_of(volume, labels, segments)


def bench_seg(volume, sources, work: Path) -> tuple[list, Path]:
    import highdicom as hd
    import numpy as np

    from workstation.dicom.seg import _description, _hd_affine, clean_sources, labelmap_to_seg, read_seg

    labelmap = _labelmap(volume)
    rows, files = [], {}
    for kind in ("BINARY", "LABELMAP"):
        seconds = _median(lambda k=kind: files.__setitem__(k, labelmap_to_seg(labelmap, sources, segmentation_type=k)))
        path = work / f"{kind}.dcm"
        files[kind].save_as(path, enforce_file_format=True)
        rows.append([f"workstation encode {kind}", seconds, path.stat().st_size / 1e6])
    clean = clean_sources(sources)

    def plain_highdicom():
        vol = hd.Volume(labelmap.labels.astype(np.uint16), _hd_affine(labelmap.affine), coordinate_system="PATIENT",
                        frame_of_reference_uid=labelmap.frame_of_reference_uid)
        return hd.seg.Segmentation(
            source_images=clean, pixel_array=vol, segmentation_type="BINARY",
            segment_descriptions=[_description(s.number, s) for s in labelmap.segments],
            series_instance_uid=hd.UID(), series_number=1, sop_instance_uid=hd.UID(), instance_number=1,
            manufacturer="peer", manufacturer_model_name="peer", software_versions="1", device_serial_number="0")

    rows.append(["highdicom encode BINARY (peer)", _median(plain_highdicom), rows[0][2]])
    for kind in ("BINARY", "LABELMAP"):
        rows.append([f"workstation decode {kind}", _median(lambda k=kind: read_seg(work / f"{k}.dcm")),
                     (work / f"{kind}.dcm").stat().st_size / 1e6])
    rows.append(["highdicom segread+get_volume (peer)", _median(
        lambda: hd.seg.segread(str(work / "BINARY.dcm")).get_volume(combine_segments=True)), rows[0][2]])
    return rows, work / "BINARY.dcm"


def _fresh_copy(path: Path, out: Path) -> Path:
    import pydicom

    ds = pydicom.dcmread(path)
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(out, enforce_file_format=True)
    return out


def bench_sync(server, seg_path: Path, work: Path) -> list:
    import requests

    from workstation.archive.credentials import BasicAuth
    from workstation.archive.dicomweb import DicomWebArchive
    from workstation.sync.outbox import Outbox
    from workstation.sync.worker import SyncWorker

    client = DicomWebArchive("Orthanc", server.dicomweb_url, auth=BasicAuth(*server.auth))
    size = seg_path.stat().st_size / 1e6
    counter = iter(range(10_000))

    def outbox_run():
        path = _fresh_copy(seg_path, work / f"sync-{next(counter)}.dcm")
        with Outbox(work / "outbox") as outbox:
            outbox.enqueue(path, "Orthanc")
            t = time.perf_counter()
            report = SyncWorker(outbox, lambda name: client).run_once()
            elapsed = time.perf_counter() - t
        assert len(report.sent) == 1, report
        return elapsed

    def storescu_run():
        path = _fresh_copy(seg_path, work / f"scu-{next(counter)}.dcm")
        t = time.perf_counter()
        subprocess.run(["storescu", "-R", "-aet", "BENCH", "-aec", "ORTHANC", "127.0.0.1", str(server.dicom_port), str(path)], check=True,
                       capture_output=True, timeout=120)
        return time.perf_counter() - t

    def rest_run():
        path = _fresh_copy(seg_path, work / f"rest-{next(counter)}.dcm")
        t = time.perf_counter()
        requests.post(f"{server.url}/instances", data=path.read_bytes(), auth=server.auth, timeout=120).raise_for_status()
        return time.perf_counter() - t

    rows = [["workstation outbox -> STOW-RS", statistics.median(outbox_run() for _ in range(RUNS)), size]]
    if shutil.which("storescu"):
        rows.append(["dcmtk storescu C-STORE (peer)", statistics.median(storescu_run() for _ in range(RUNS)), size])
    rows.append(["REST POST /instances (peer)", statistics.median(rest_run() for _ in range(RUNS)), size])
    return rows


def bench_export(server, work: Path) -> list:
    from workstation.archive.credentials import BasicAuth
    from workstation.archive.dicomweb import DicomWebArchive
    from workstation.dicom.deid import Deidentifier
    from workstation.labels.dataset_export import export_dataset
    from workstation.labels.lidc_import import import_lidc
    from workstation.labels.schema import load_schema

    case = SHARED_DATA / "ct-chest-lidc-0001"
    result = import_lidc(case / "069.xml", work / "lidc", series=str(case / "dicom"))
    server.upload(result.written)
    schema, deid = load_schema("lung-nodule"), Deidentifier(b"bench-key-0123456789abcdef")
    counter = iter(range(100))

    def export():
        n = next(counter)
        client = DicomWebArchive("Orthanc", server.dicomweb_url, auth=BasicAuth(*server.auth),
                                 cache_dir=work / f"cache-{n}")
        summary = export_dataset(client, schema, work / f"dataset-{n}", deid, progress=lambda line: None)
        assert summary.written == ["001"], summary

    rows = [["workstation export-dataset nnunetv2 (Orthanc, cold cache)", _median(export)]]
    if shutil.which("dcm2niix"):
        def dcm2niix():
            out = work / f"niix-{next(counter)}"
            out.mkdir()
            subprocess.run(["dcm2niix", "-z", "y", "-o", str(out), str(case / "dicom")], check=True,
                           capture_output=True, timeout=300)

        rows.append(["dcm2niix -z y, image only, local files (peer)", _median(dcm2niix)])
    return rows


def main() -> None:
    from tests.integration import orthanc as orthanc_mod
    from workstation.dicom.seg import read_source_headers
    from workstation.dicom.series import load_series

    folder = case_dir("ct-chest-lidc-0001")
    if folder is None:
        print("bench_labels skipped: no shared data")
        return
    files = orthanc_mod.dicom_files(folder)
    (volume,) = load_series(files)
    sources = read_source_headers(files)
    with tempfile.TemporaryDirectory(prefix="bench-labels-") as tmp:
        work = Path(tmp)
        seg_rows, seg_path = bench_seg(volume, sources, work)
        print_table(f"SEG of a 4-segment label map on {volume.shape} (median of {RUNS}; goal: encode < 1 s)",
                    ["what", "seconds", "MB"], seg_rows)
        reason = orthanc_mod.orthanc_available()
        if reason:
            print(f"sync and export skipped: {reason}")
            return
        server = orthanc_mod.OrthancServer(work / "orthanc", {"BENCH": orthanc_mod.free_port()})
        server.start()
        try:
            server.upload(files)
            print_table(f"Sync of that SEG to Orthanc on loopback (median of {RUNS})", ["what", "seconds", "MB"],
                        bench_sync(server, seg_path, work))
            print_table(f"Export of the LIDC case (median of {RUNS})", ["what", "seconds"], bench_export(server, work))
        finally:
            server.stop()


if __name__ == "__main__":
    main()

"""export-dataset on the command line: bad inputs get one clear line; a local archive with the dcmqi CT and
its third-party liver SEG exports as nnU-Net v2 (the full LIDC-through-Orthanc run is in tests/integration)."""

from __future__ import annotations

import json


from tests.conftest import run_cli as run
from tests.shared_data import shared_case


def test_bad_query_format_and_schema_are_one_line(home, capsys, tmp_path):
    code, _, err = run(capsys, "export-dataset", "--archive", "Local", "--schema", "lung-nodule",
                       "--out", str(tmp_path / "d"), "--query", "colour=red")
    assert code == 1 and "--query 'colour=red': expected FIELD=VALUE" in err
    code, _, err = run(capsys, "export-dataset", "--archive", "Local", "--schema", "lung-nodule",
                       "--out", str(tmp_path / "d"), "--query", "date_from=2020-01-01")
    assert code == 1 and "dates are YYYYMMDD" in err
    code, _, err = run(capsys, "export-dataset", "--archive", "Local", "--schema", "no-such-schema",
                       "--out", str(tmp_path / "d"))
    assert code == 1 and "no label schema named 'no-such-schema'" in err
    code, _, err = run(capsys, "export-dataset", "--archive", "Local", "--schema", "lung-nodule",
                       "--out", str(tmp_path / "d"), "--format", "zip")
    assert code == 2  # argparse: invalid choice


def test_local_archive_export_maps_segments_onto_the_schema(home, capsys, tmp_path):
    """The dcmqi liver SEG is not in the lung schema: the case is reported and nothing is written."""
    folder = shared_case("seg-ct-3slice-dcmqi")
    assert run(capsys, "import", str(folder / "dicom"), str(folder / "liver.dcm"))[0] == 0
    code, out, err = run(capsys, "export-dataset", "--archive", "Local", "--schema", "lung-nodule",
                         "--out", str(tmp_path / "d"))
    assert code == 1 and "none of the set's segments is in schema 'lung-nodule'" in out
    schema = tmp_path / "liver.toml"
    schema.write_text('[schema]\nname = "liver"\ntitle = "Liver"\nversion = "1"\nmodalities = ["CT"]\n\n'
                      '[[segments]]\nnumber = 7\nname = "Liver"\ncolour = [200, 100, 80]\n'
                      'category = { value = "123037004", scheme = "SCT", meaning = "Anatomical Structure" }\n'
                      'type = { value = "10200004", scheme = "SCT", meaning = "Liver" }\ntools = ["brush"]\n')
    code, out, err = run(capsys, "export-dataset", "--archive", "Local", "--schema", str(schema),
                         "--out", str(tmp_path / "d"))
    assert code == 0, out + err
    meta = json.loads((tmp_path / "d" / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "Liver": 1} and meta["numTraining"] == 1
    provenance = json.loads((tmp_path / "d" / "provenance.json").read_text())
    assert provenance["cases"]["001"]["voxels_per_label"]["Liver"] > 0
    assert (home / "deid.key").stat().st_size == 32


def test_the_approved_revision_is_exported_before_a_later_unreviewed_one(home, capsys, tmp_path):
    import numpy as np
    import pydicom
    import SimpleITK as sitk

    from tests.unit.test_labels_annotation_sets import SCHEMA, _finding, _labelmap
    from workstation.archive.local import LocalArchive
    from workstation.dicom.seg import read_source_headers
    from workstation.dicom.series import load_series
    from workstation.labels.annotation_sets import list_sets, save_revision

    files = sorted((shared_case("seg-ct-3slice-dcmqi") / "dicom").glob("*.dcm"))
    assert run(capsys, "import", *map(str, files))[0] == 0
    (volume,) = load_series(files)
    sources = read_source_headers(files)
    archive = LocalArchive(home / "archive")
    previous = None
    for revision, (shift, approved) in enumerate(((0, True), (9, False)), start=1):
        finding = _finding(volume, "Dana^D")
        finding = finding.accept("Dana^D") if approved else finding
        seg, sr = save_revision(sources, annotator="Dana^D", set_name="Nodules", labelmap=_labelmap(volume, shift),
                                findings=[finding], previous=previous)
        paths = [tmp_path / f"seg{revision}.dcm", tmp_path / f"sr{revision}.dcm"]
        seg.save_as(paths[0], enforce_file_format=True)
        sr.save_as(paths[1], enforce_file_format=True)
        archive.store(paths)
        (previous,) = list_sets(archive, volume.info.study_instance_uid)
    archive.close()
    code, out, err = run(capsys, "export-dataset", "--archive", "Local", "--schema", "lung-nodule",
                         "--out", str(tmp_path / "d"))
    assert code == 0, out + err
    record = json.loads((tmp_path / "d" / "provenance.json").read_text())["cases"]["001"]
    assert (record["revision"], record["review_state"], record["annotator"]) == (1, "approved", "Dana^D")
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "d" / "labelsTr" / "001.nii.gz")))
    want = _labelmap(volume, 0).labels  # schema numbers 1, 2 are dataset labels 1, 2 (schema order)
    assert np.array_equal(labels, want) and [s.segment.number for s in SCHEMA.segments] == [1, 2]
    header = pydicom.Dataset.from_json(json.loads((tmp_path / "d" / "headers" / "001.json").read_text()))
    assert str(header.PatientID).startswith("ANON-") and header.PatientIdentityRemoved == "YES"
    assert header.StudyInstanceUID != volume.info.study_instance_uid and header.Modality == "CT"

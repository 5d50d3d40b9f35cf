"""LIDC-IDRI reads as annotations: parsing, rasterising, one SEG per reader, agreement, dciodvfy."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess

import numpy as np
import pytest

from tests.shared_data import shared_case
from workstation.dicom.lidc import LidcError, fill_contour, parse_lidc_xml


def test_fill_contour_square_includes_boundary():
    square = ((2, 2), (6, 2), (6, 6), (2, 6))
    mask = fill_contour(square, 10, 10)
    assert mask.sum() == 25 and mask[2:7, 2:7].all()
    assert fill_contour(((3, 4),), 10, 10).sum() == 1  # a nodule under 3 mm: one point


def test_bad_xml(tmp_path):
    bad = tmp_path / "x.xml"
    bad.write_text("<notlidc/>")
    with pytest.raises(LidcError, match="not an LIDC read message"):
        parse_lidc_xml(bad)
    bad.write_text("<<")
    with pytest.raises(LidcError, match="not a readable LIDC XML"):
        parse_lidc_xml(bad)


@pytest.fixture(scope="module")
def lidc_import(tmp_path_factory):
    case = shared_case("ct-chest-lidc-0001")
    from workstation.labels.lidc_import import import_lidc

    return import_lidc(case / "069.xml", tmp_path_factory.mktemp("lidc"), series=str(case / "dicom"))


def test_parse_four_readers():
    xml = parse_lidc_xml(shared_case("ct-chest-lidc-0001") / "069.xml")
    assert len(xml.reads) == 4 and xml.series_instance_uid.endswith("192")
    big = [n for r in xml.reads for n in r.nodules if not n.is_small]
    assert all(1 <= n.characteristics["malignancy"] <= 5 for n in big)


def test_one_seg_per_reader_naming_the_annotator(lidc_import):
    import pydicom

    assert sorted(lidc_import.files) == [f"LIDC reader {n}" for n in range(1, 5)]
    for n in range(1, 5):
        ds = pydicom.dcmread(lidc_import.files[f"LIDC reader {n}"])
        assert ds.Modality == "SEG" and ds.ContentDescription == f"LIDC reader {n}"
        assert str(ds.ContentCreatorName) == f"LIDC^Reader {n}"
        refs = {str(i.ReferencedSOPInstanceUID) for s in ds.ReferencedSeriesSequence for i in s.ReferencedInstanceSequence}
        assert refs  # references the source CT images


def test_seg_reads_back_identical(lidc_import):
    from workstation.dicom.seg import labelmap_onto_grid, read_seg

    for annotator, path in lidc_import.files.items():
        original = lidc_import.maps[annotator]
        back = read_seg(path)
        grid = labelmap_onto_grid(back, original.shape, original.affine)
        assert np.array_equal(grid > 0, original.labels > 0), annotator


def test_agreement_on_the_large_nodule(lidc_import):
    a = lidc_import.agreement
    assert a is not None and len(a.annotators) == 4
    for i, j in itertools.combinations(range(4), 2):
        assert 0.5 < a.dice[i][j] <= 1.0, (a.annotators[i], a.annotators[j], a.dice[i][j])
    assert max(a.volumes_mm3) <= 2 * min(a.volumes_mm3)
    assert 1000 < min(a.volumes_mm3)  # a large nodule: several cm^3


def test_segs_pass_dciodvfy(lidc_import):
    if shutil.which("dciodvfy") is None:
        reason = "dciodvfy is not installed (dicom3tools)"
        if os.environ.get("WORKSTATION_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(reason + " (WORKSTATION_REQUIRE_SHARED_DATA=1)")
        pytest.skip(reason)
    for path in lidc_import.files.values():
        out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
        errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], f"{path}: {errors}"


def test_cli_import_lidc(tmp_path, capsys):
    from workstation.cli import main

    case = shared_case("ct-chest-lidc-0001")
    code = main(["--home", str(tmp_path / "home"), "import-lidc", str(case / "069.xml"),
                 "--series", str(case / "dicom"), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "LIDC reader 4" in out and "volume mm^3" in out
    assert len(list((tmp_path / "out").glob("*-seg.dcm"))) == 4


def test_cli_import_lidc_bad_xml(tmp_path, capsys):
    from workstation.cli import main

    bad = tmp_path / "x.xml"
    bad.write_text("<x/>")
    assert main(["--home", str(tmp_path), "import-lidc", str(bad), "--series", str(tmp_path), "--out",
                 str(tmp_path / "o")]) == 1
    assert "not an LIDC read message" in capsys.readouterr().err

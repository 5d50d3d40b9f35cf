"""LIDC-IDRI reads as annotations: parsing, rasterising, one SEG and SR per reader, agreement, dciodvfy, outbox."""

from __future__ import annotations

import itertools
import json
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


def _dciodvfy_errors(paths) -> dict:
    if shutil.which("dciodvfy") is None:
        reason = "dciodvfy is not installed (dicom3tools)"
        if os.environ.get("WORKSTATION_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(reason + " (WORKSTATION_REQUIRE_SHARED_DATA=1)")
        pytest.skip(reason)
    found = {}
    for path in paths:
        out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
        errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]
        if errors:
            found[str(path)] = errors
    return found


def test_segs_pass_dciodvfy(lidc_import):
    assert _dciodvfy_errors(lidc_import.files.values()) == {}


def test_srs_pass_dciodvfy(lidc_import):
    assert len(lidc_import.sr_files) == 4
    assert _dciodvfy_errors(lidc_import.sr_files.values()) == {}


def test_one_sr_per_reader_with_its_nodules(lidc_import):
    import pydicom

    from workstation.dicom.lidc import parse_lidc_xml
    from workstation.dicom.sr import sr_to_findings
    from workstation.labels.lidc_import import read_sr_characteristics

    reads = {r.annotator: r for r in parse_lidc_xml(shared_case("ct-chest-lidc-0001") / "069.xml").reads}
    for annotator, path in lidc_import.sr_files.items():
        ds = pydicom.dcmread(path)
        n = annotator.rsplit(" ", 1)[1]
        seg = pydicom.dcmread(lidc_import.files[annotator], stop_before_pixels=True)
        assert ds.StudyInstanceUID == seg.StudyInstanceUID and ds.SeriesInstanceUID != seg.SeriesInstanceUID
        findings, measurements = sr_to_findings(ds)
        labelmap = lidc_import.maps[annotator]
        assert measurements == [] and len(findings) == len(labelmap.segments)
        codes = {(str(c.CodeValue), str(c.CodingSchemeDesignator)) for g in _groups(ds) for i in g.ContentSequence
                 if i.ConceptNameCodeSequence[0].CodeValue == "121071" for c in i.ConceptCodeSequence}
        assert codes == {("27925004", "SCT")}  # finding type: nodule
        for f in findings:
            assert f.label == "Lung nodule" and f.score == 1.0 and f.provenance.model_id == f"LIDC^Reader {n}"
            voxels = labelmap.counts()[f.segment_number]
            if voxels > 1:
                assert f.volume_mm3 == pytest.approx(labelmap.volume_mm3(f.segment_number), rel=1e-6)
            kji = np.argwhere(labelmap.labels == f.segment_number).mean(axis=0)
            centre = kji[::-1] @ labelmap.affine[:3, :3].T + labelmap.affine[:3, 3]
            assert np.allclose(f.centroid_mm, centre, atol=1e-3)
        # the characteristics of every contoured nodule come back from the SR as they are in the XML
        back = read_sr_characteristics(ds)
        assert len(back) == len(findings)
        expected = {nod.nodule_id: nod.characteristics for nod in reads[annotator].nodules}
        got = {e["nodule_id"]: e["characteristics"] for e in back.values()}
        assert got == {k: expected[k] for k in got}
        assert any(1 <= c.get("malignancy", 0) <= 5 for c in got.values())


def _groups(ds):
    for item in ds.ContentSequence:
        if item.ConceptNameCodeSequence[0].CodeValue == "126010":
            yield from item.ContentSequence


def test_characteristic_codes_fit_sh():
    from workstation.dicom.lidc import CHARACTERISTIC_CODES, LidcError, characteristic_code, characteristic_rating

    assert len(CHARACTERISTIC_CODES) == 9
    assert characteristic_code("malignancy", 3).meaning == "3 Indeterminate"
    assert characteristic_rating("calcification", characteristic_code("calcification", 6).value) == 6
    assert all(len(characteristic_code(n, 4).value) <= 16 for n in CHARACTERISTIC_CODES)
    with pytest.raises(LidcError, match="outside"):
        characteristic_code("internalStructure", 5)


def test_enqueue_puts_seg_and_sr_in_the_outbox(lidc_import, tmp_path):
    from workstation.labels.lidc_import import enqueue_import
    from workstation.sync.outbox import ItemStatus, Outbox

    with Outbox(tmp_path / "outbox") as outbox:
        items = enqueue_import(lidc_import, outbox, "pacs")
        assert len(items) == 8 and len({i.sop_instance_uid for i in items}) == 8
        assert enqueue_import(lidc_import, outbox, "pacs")  # again: no duplicates
        assert len(outbox.items("pacs", ItemStatus.QUEUED)) == 8


def test_cli_import_lidc(tmp_path, capsys):
    from workstation.cli import main

    case = shared_case("ct-chest-lidc-0001")
    code = main(["--home", str(tmp_path / "home"), "import-lidc", str(case / "069.xml"),
                 "--series", str(case / "dicom"), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "LIDC reader 4" in out and "volume mm^3" in out
    assert len(list((tmp_path / "out").glob("*-seg.dcm"))) == 4
    assert len(list((tmp_path / "out").glob("*-sr.dcm"))) == 4


def test_cli_import_lidc_enqueue(tmp_path, capsys):
    from workstation.cli import main

    case = shared_case("ct-chest-lidc-0001")
    home = tmp_path / "home"
    code = main(["--home", str(home), "import-lidc", str(case / "069.xml"), "--series", str(case / "dicom"),
                 "--out", str(tmp_path / "out"), "--enqueue", "pacs"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "8 file(s) in the outbox for pacs" in out
    assert main(["--home", str(home), "sync", "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert len([i for i in status["items"] if i["archive"] == "pacs" and i["status"] == "queued"]) == 8


def test_cli_import_lidc_bad_xml(tmp_path, capsys):
    from workstation.cli import main

    bad = tmp_path / "x.xml"
    bad.write_text("<x/>")
    assert main(["--home", str(tmp_path), "import-lidc", str(bad), "--series", str(tmp_path), "--out",
                 str(tmp_path / "o")]) == 1
    assert "not an LIDC read message" in capsys.readouterr().err

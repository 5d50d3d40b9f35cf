"""The ``workstation`` command line (run through ``main([...])`` and once as ``python -m workstation``),
the settings it loads, and the first-run samples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tests.conftest import run_cli as run
from tests.shared_data import shared_case
from workstation.archive.local import LocalArchive
from workstation.archive.samples import install_samples
from workstation.cli import main
from workstation.config import ArchiveEndpoint, ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]
LIDC_SERIES = "1.3.6.1.4.1.14519.5.2.1.6279.6001.179049373636438705059720603192"




# -- settings ------------------------------------------------------------------------------------------
def test_cli_settings_from_environment(tmp_path):
    s = load_settings({"WORKSTATION_HOME": str(tmp_path / "w")})
    assert (s.home, s.archive_dir, s.cache_dir, s.archives) == (
        tmp_path / "w", tmp_path / "w" / "archive", tmp_path / "w" / "cache", ())
    s = load_settings({"XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CACHE_HOME": str(tmp_path / "cache"),
                       "HOME": str(tmp_path)})
    assert s.home == tmp_path / "data" / "workstation" and s.cache_dir == tmp_path / "cache" / "workstation"
    s = load_settings({"HOME": str(tmp_path)})
    assert s.home == tmp_path / ".local" / "share" / "workstation"
    assert s.cache_dir == tmp_path / ".cache" / "workstation"


def test_cli_settings_from_toml(tmp_path):
    (tmp_path / "workstation.toml").write_text(
        'archive_dir = "/data/archive"\n'
        '[[archives]]\nname = "PACS"\nkind = "dimse"\nhost = "pacs"\nport = 11112\ncalled_ae = "PACS"\n'
        '[[archives]]\nname = "Web"\nkind = "dicomweb"\nurl = "http://localhost:8042/dicom-web"\n'
    )
    s = load_settings({"WORKSTATION_HOME": str(tmp_path)})
    assert s.archive_dir == Path("/data/archive") and s.config_file == tmp_path / "workstation.toml"
    assert s.archives == (
        ArchiveEndpoint("PACS", "dimse", host="pacs", port=11112, called_ae="PACS"),
        ArchiveEndpoint("Web", "dicomweb", url="http://localhost:8042/dicom-web"),
    )


@pytest.mark.parametrize("text, words", [
    ("archive_dir = ", "invalid TOML"),
    ('[[archives]]\nname = "X"\nkind = "ftp"\n', "kind 'ftp'"),
    ('[[archives]]\nname = "X"\nkind = "dicomweb"\n', "needs a url"),
])
def test_cli_settings_errors_are_specific(tmp_path, capsys, text, words):
    (tmp_path / "workstation.toml").write_text(text)
    with pytest.raises(ConfigError, match=words):
        load_settings({"WORKSTATION_HOME": str(tmp_path)})
    code, _, err = run(capsys, "--home", str(tmp_path), "studies")
    assert code == 1 and words in err and "Traceback" not in err


# -- import, studies, series, delete -------------------------------------------------------------------
def test_cli_import_lidc_then_list_and_delete(home, capsys):
    case = shared_case("ct-chest-lidc-0001")
    code, out, _ = run(capsys, "import", str(case))
    assert code == 0
    assert "imported 133 files into 1 series of 1 studies" in out
    assert "CT '': 133 instances" in out
    assert f"skipped {case / '069.xml'}: not a DICOM file" in out
    assert (home / "archive" / "index.sqlite").is_file()

    code, out, _ = run(capsys, "import", str(case / "dicom"))
    assert code == 0 and "133 duplicates" in out and "imported 0 files" in out

    code, out, _ = run(capsys, "studies", "--json")
    [study] = json.loads(out)
    assert study["patient_id"] == "LIDC-IDRI-0001" and study["modalities"] == ["CT"]
    assert (study["number_of_series"], study["number_of_instances"]) == (1, 133)
    code, out, _ = run(capsys, "studies")
    assert code == 0 and "LIDC-IDRI-0001" in out and "2000-01-01" in out

    uid = study["study_instance_uid"]
    code, out, _ = run(capsys, "series", uid, "--json")
    assert [s["series_instance_uid"] for s in json.loads(out)] == [LIDC_SERIES]
    code, out, _ = run(capsys, "series", uid)
    assert code == 0 and LIDC_SERIES in out

    code, out, _ = run(capsys, "delete", uid)
    assert code == 0 and "133 instances" in out
    assert json.loads(run(capsys, "studies", "--json")[1]) == []
    assert not list((home / "archive" / "files").rglob("*.dcm"))


def test_cli_import_of_nothing_usable_fails(home, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty.dcm").write_bytes(b"")
    code, out, _ = run(capsys, "import", str(tmp_path / "notes.txt"), str(tmp_path / "empty.dcm"))
    assert code == 1
    assert f"skipped {tmp_path / 'empty.dcm'}: empty file (0 bytes)" in out
    assert f"skipped {tmp_path / 'notes.txt'}: not a DICOM file" in out


def test_cli_errors_are_one_line(home, capsys):
    code, _, err = run(capsys, "series", "1.2.3")
    assert code == 1 and err.strip() == "workstation: error: study 1.2.3 is not in the Local archive"
    code, _, err = run(capsys, "delete", "1.2.3")
    assert code == 1 and "not in the Local archive" in err
    code, _, err = run(capsys, "info", "/no/such/thing")
    assert code == 1 and "no such file or folder" in err and "Traceback" not in err


def test_cli_usage_errors_exit_2(home, capsys):
    assert run(capsys, "frobnicate")[0] == 2
    assert run(capsys, "import")[0] == 2
    code, _, err = run(capsys, "render", "x", "--out", "a.png", "--size", "big")
    assert code == 2 and "WIDTHxHEIGHT" in err
    code, _, err = run(capsys, "render", "x", "--out", "a.png", "--position-mm", "1,2")
    assert code == 2 and "X,Y,Z" in err
    assert run(capsys, "--help")[0] == 0


def test_cli_home_option_overrides_environment(home, tmp_path, capsys):
    other = tmp_path / "other"
    code, out, _ = run(capsys, "--home", str(other), "studies", "--json")
    assert code == 0 and json.loads(out) == []
    assert (other / "archive" / "index.sqlite").is_file() and not home.exists()


def test_cli_no_subcommand_starts_the_gui(home, monkeypatch, capsys):
    calls = []
    fake = types.ModuleType("workstation.app")
    fake.run_gui = lambda settings, samples: calls.append((settings.home, samples)) or 0
    monkeypatch.setitem(sys.modules, "workstation.app", fake)
    assert main([]) == 0 and main(["gui"]) == 0
    assert calls == [(home, True), (home, True)]


def test_cli_as_python_module(tmp_path):
    env = dict(os.environ, WORKSTATION_HOME=str(tmp_path / "h"))
    exe = ROOT / ".venv" / "bin" / "python"
    result = subprocess.run([str(exe if exe.exists() else sys.executable), "-m", "workstation", "studies", "--json"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []
    bad = subprocess.run([str(exe if exe.exists() else sys.executable), "-m", "workstation", "series", "9.9"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr


# -- info and render (need the dicom and render rooms) ---------------------------------------------------
def test_cli_info_lidc_folder_and_archived_series(home, capsys):
    pytest.importorskip("workstation.dicom.series")
    folder = shared_case("ct-chest-lidc-0001") / "dicom"
    code, out, _ = run(capsys, "info", str(folder), "--json")
    assert code == 0
    info = json.loads(out)
    assert info["modality"] == "CT" and info["shape"] == [133, 512, 512]
    assert info["spacing_mm"] == pytest.approx([0.703125, 0.703125, 2.5])
    assert len(info["affine_lps"]) == 4 and all(len(r) == 4 for r in info["affine_lps"])
    assert info["gantry_tilt_deg"] == 0 and isinstance(info["warnings"], list)
    assert info["series_instance_uid"] == LIDC_SERIES and info["skipped"] == []
    assert info["units"] == "HU" and info["dtype"]

    run(capsys, "import", str(folder))
    code, out, _ = run(capsys, "info", LIDC_SERIES, "--json")
    assert code == 0 and json.loads(out)["shape"] == [133, 512, 512]
    code, out, _ = run(capsys, "info", LIDC_SERIES)
    assert code == 0 and "[133, 512, 512]" in out


def test_cli_info_gantry_tilt(home, capsys):
    pytest.importorskip("workstation.dicom.series")
    code, out, _ = run(capsys, "info", str(shared_case("ct-head-ge-tilt") / "dicom"), "--json")
    info = json.loads(out)
    assert code == 0 and abs(info["gantry_tilt_deg"]) == pytest.approx(18.5, abs=0.05)
    assert info["warnings"]


def test_cli_info_several_series_prints_a_list(home, tmp_path, capsys):
    pytest.importorskip("workstation.dicom.series")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for f in sorted((shared_case("ct-head-ge-tilt") / "dicom").iterdir()):
        (mixed / f"tilt-{f.name}").symlink_to(f)
    (mixed / "mr.dcm").symlink_to(shared_case("mr-slice-codecs") / "dicom" / "1.dcm")
    code, out, _ = run(capsys, "info", str(mixed), "--json")
    infos = json.loads(out)
    assert code == 0 and isinstance(infos, list) and len(infos) == 2
    assert sorted(i["modality"] for i in infos) == ["CT", "MR"]


def test_cli_info_on_a_segmentation_only_fails_clearly(home, capsys):
    pytest.importorskip("workstation.dicom.series")
    code, _, err = run(capsys, "info", str(shared_case("seg-ct-3slice-dcmqi") / "liver.dcm"), "--json")
    assert code == 1 and "no loadable image series" in err and "segmentation" in err


def test_cli_render_png(home, tmp_path, capsys):
    pytest.importorskip("workstation.dicom.series")
    pytest.importorskip("workstation.render.offscreen")
    out_png = tmp_path / "cor.png"
    folder = shared_case("ct-chest-lidc-0001") / "dicom"
    code, out, err = run(capsys, "render", str(folder), "--view", "coronal", "--preset", "lung",
                         "--size", "128x96", "--position-mm", "0,0,-150", "--out", str(out_png))
    assert code == 0, err
    assert out.strip() == str(out_png)
    data = out_png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(data[16:20], "big") == 128 and int.from_bytes(data[20:24], "big") == 96
    code, _, err = run(capsys, "render", str(folder), "--preset", "nosuch", "--out", str(tmp_path / "x.png"))
    assert code == 1 and "nosuch" in err and "Traceback" not in err


# -- first-run samples -----------------------------------------------------------------------------------
def _fake_shared(tmp_path: Path) -> Path:
    """A shared-data-like folder: one case with dicom/ and a SEG object next to it, plus a loose file."""
    seg = shared_case("seg-ct-3slice-dcmqi")
    case = tmp_path / "shared" / "seg-case"
    (case / "dicom").mkdir(parents=True)
    for f in sorted((seg / "dicom").iterdir()):
        (case / "dicom" / f.name).symlink_to(f)
    (case / "liver.dcm").symlink_to(seg / "liver.dcm")
    (case / "liver_seg.nrrd").symlink_to(seg / "liver_seg.nrrd")  # not DICOM: not offered for import
    (tmp_path / "shared" / "README.md").write_text("readme")
    return tmp_path / "shared"


def test_samples_are_installed_once(tmp_path, monkeypatch):
    from workstation.archive import samples

    missing = samples.VolumeSample("nothing", tmp_path / "absent.nii.gz", "some-package", "X", "X", "X")
    monkeypatch.setattr(samples, "DEBIAN_SAMPLES", (missing,))
    archive = LocalArchive(tmp_path / "archive")
    first = install_samples(archive, _fake_shared(tmp_path))
    assert len(first.imported) == 4 and len(first.studies) == 1
    assert [(s.path, s.reason) for s in first.skipped] == [
        (str(tmp_path / "absent.nii.gz"), "package some-package is not installed (apt install some-package)")]
    again = install_samples(archive, _fake_shared(tmp_path / "again"))
    assert not again.imported and not again.duplicates  # the marker says it is done: no work at all
    assert json.loads((archive.root / "samples.json").read_text())["done"] == {"shared:seg-case": True}
    assert install_samples(archive, None).imported == ()


def test_samples_convert_the_mricron_brain(tmp_path, monkeypatch):
    pytest.importorskip("workstation.dicom.volume_import")
    from workstation.archive import samples

    [mricron] = [s for s in samples.DEBIAN_SAMPLES if s.key == "mricron-ch2"]
    if not mricron.path.is_file():
        pytest.skip(f"{mricron.package} is not installed ({mricron.path} missing)")
    monkeypatch.setattr(samples, "DEBIAN_SAMPLES", (mricron,))
    archive = LocalArchive(tmp_path / "archive")
    report = install_samples(archive, None)
    assert not report.skipped and len(report.studies) == 1
    [study] = archive.find_studies()
    assert study.patient_id == "SAMPLE-MR-CH2" and study.modalities == ("MR",)
    assert study.number_of_instances == len(report.imported) > 100
    assert not list(archive.tmp_dir.iterdir())  # the converted scratch copy is gone

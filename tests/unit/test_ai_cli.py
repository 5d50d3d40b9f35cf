"""``workstation plugins list`` and ``workstation ai run``: output, the SEG written, clear errors."""

from __future__ import annotations

import json

import pytest

from tests.model_files import shared_model
from tests.shared_data import shared_case
from workstation.cli import main


def test_plugins_list_json(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKSTATION_HOME", str(tmp_path))
    assert main(["plugins", "list", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    ids = [p["id"] for p in out["plugins"]]
    assert "brainchop-tissue" in ids
    row = out["plugins"][ids.index("brainchop-tissue")]
    assert row["version"] == "1.0.0" and row["output"] == "labelmap" and row["modalities"] == ["MR"]
    assert row["model"] or "WORKSTATION_MODEL_PATH" in row["problem"]


def test_plugins_list_text(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKSTATION_HOME", str(tmp_path))
    assert main(["plugins", "list"]) == 0
    assert "brainchop-tissue  1.0.0" in capsys.readouterr().out


def test_ai_run_unknown_plugin_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKSTATION_HOME", str(tmp_path))
    assert main(["ai", "run", "nope", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "no plugin 'nope'" in err and "Traceback" not in err


def test_ai_run_wrong_modality_writes_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKSTATION_HOME", str(tmp_path))
    ct = shared_case("ct-head-ge-tilt")
    out = tmp_path / "out"
    assert main(["ai", "run", "brainchop-tissue", str(ct), "--out", str(out)]) == 1
    assert "made for MR" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_ai_run_writes_a_seg(capsys, tmp_path, monkeypatch):
    shared_model("brainchop-tissue")
    monkeypatch.setenv("WORKSTATION_HOME", str(tmp_path))
    mr = shared_case("mr-head-t1-7t") / "dicom"
    out = tmp_path / "out"
    assert main(["ai", "run", "brainchop-tissue", str(mr), "--out", str(out), "--threads", "2"]) == 0
    text = capsys.readouterr().out
    assert "AI-generated" in text and "White matter" in text and "Grey matter" in text
    files = list(out.glob("*.seg.dcm"))
    assert len(files) == 1 and not list(out.glob("*.partial"))
    from workstation.dicom.seg import read_seg

    back = read_seg(files[0])
    assert [s.name for s in back.segments] == ["White matter", "Grey matter"]


# -- bad input: each refused with one clear line, nothing written --------------------------------------------
_TINY_MANIFEST = """schema = 1
id = "tiny"
version = "0.1"
title = "Tiny test model"
model = "{model}"
[input]
tensor = "input"
modalities = ["MR"]
spacing_mm = [16.0, 16.0, 16.0]
size = [{size}, {size}, {size}]
[output]
tensor = "output"
[[labels]]
value = 1
name = "Bright"
colour = [255, 0, 0]
category = {{ code = "85756007", scheme = "SCT", meaning = "Tissue" }}
type = {{ code = "85756007", scheme = "SCT", meaning = "Tissue" }}
"""


def _tiny_model(path, edge: int = 16) -> None:
    """A real ONNX model with a fixed [1, 1, edge^3] input: scores (-x, x) for background and label 1."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, edge, edge, edge])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 2, edge, edge, edge])
    nodes = [helper.make_node("Neg", ["input"], ["neg"]),
             helper.make_node("Concat", ["neg", "input"], ["output"], axis=1)]
    model = helper.make_model(helper.make_graph(nodes, "tiny", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _site_plugin(home, *, model: str = "model.onnx", size: int = 16):
    """A site plugin folder named in the home's workstation.toml (``plugin_dirs``), as a site would add one."""
    folder = home / "site" / "tiny"
    folder.mkdir(parents=True)
    folder.joinpath("plugin.toml").write_text(_TINY_MANIFEST.format(model=model, size=size))
    home.joinpath("workstation.toml").write_text(f'plugin_dirs = ["{home / "site"}"]\n')
    return folder


def _run_refused(capsys, home, plugin: str, *extra: str) -> str:
    mr = shared_case("mr-head-t1-7t") / "dicom"
    out = home / "out"
    assert main(["--home", str(home), "ai", "run", plugin, str(mr), "--out", str(out), *extra]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())  # nothing written
    return err


def test_ai_run_missing_model_file(capsys, tmp_path):
    _site_plugin(tmp_path, model="absent.onnx")
    err = _run_refused(capsys, tmp_path, "tiny")
    assert "model file 'absent.onnx' not found" in err and "WORKSTATION_MODEL_PATH" in err


def test_ai_run_corrupt_model_file(capsys, tmp_path):
    _site_plugin(tmp_path).joinpath("model.onnx").write_bytes(b"\x08\x07 this is not a protobuf")
    assert "model.onnx: not a usable ONNX model" in _run_refused(capsys, tmp_path, "tiny")


def test_ai_run_wrong_input_shape(capsys, tmp_path):
    _tiny_model(_site_plugin(tmp_path, size=8) / "model.onnx", edge=16)
    err = _run_refused(capsys, tmp_path, "tiny")
    assert "takes 'input' of shape [1, 1, 16, 16, 16], but the plugin prepared [1, 1, 8, 8, 8]" in err


def test_ai_run_volume_too_large_for_the_memory_budget(capsys, tmp_path):
    err = _run_refused(capsys, tmp_path, "brain-extraction", "--memory-gb", "0.05")
    assert "would need about" in err and "the budget is 0.0 GiB" in err


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_ai_run_tiny_site_plugin_runs(capsys, tmp_path):
    _tiny_model(_site_plugin(tmp_path) / "model.onnx")
    mr = shared_case("mr-head-t1-7t") / "dicom"
    assert main(["--home", str(tmp_path), "ai", "run", "tiny", str(mr), "--out", str(tmp_path / "out")]) == 0
    assert "segment 1 Bright" in capsys.readouterr().out
    assert len(list((tmp_path / "out").glob("tiny-*.seg.dcm"))) == 1


# -- --archive NAME: SEG and SR stored through the outbox ----------------------------------------------------
def test_ai_run_unknown_archive_fails_before_running(capsys, tmp_path):
    err = _run_refused(capsys, tmp_path, "brain-extraction", "--archive", "Nowhere")
    assert "no archive named 'Nowhere'" in err


@pytest.fixture(scope="module")
def stored_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    mr = shared_case("mr-head-t1-7t") / "dicom"
    out = home / "out"
    import contextlib
    import io

    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        code = main(["--home", str(home), "ai", "run", "brain-extraction", str(mr), "--out", str(out),
                     "--threads", "2", "--archive", "Local"])
    return home, out, code, text.getvalue()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_ai_run_stores_seg_and_sr_to_the_archive(stored_run):
    import pydicom

    from workstation.archive.local import LocalArchive
    from workstation.dicom.sr.decode import sr_to_findings
    from workstation.sync.outbox import ItemStatus, Outbox

    home, out, code, text = stored_run
    assert code == 0 and "stored 2 object(s) to Local" in text
    seg, sr = sorted(out.glob("*.seg.dcm")), sorted(out.glob("*.sr.dcm"))
    assert len(seg) == 1 and len(sr) == 1 and not list(out.glob("*.partial"))
    report = pydicom.dcmread(sr[0])
    findings, _ = sr_to_findings(report)
    assert [f.label for f in findings] == ["Brain"] and findings[0].provenance.model_id == "brain-extraction"
    archive = LocalArchive(home / "archive")
    modalities = {s.modality for s in archive.find_series(str(report.StudyInstanceUID))}
    assert {"SEG", "SR"} <= modalities
    with Outbox(home / "outbox") as outbox:
        assert {i.status for i in outbox.items("Local")} == {ItemStatus.SENT} and len(outbox.items()) == 2


def test_unreachable_archive_leaves_results_queued(stored_run, tmp_path):
    from workstation.ai_archive import StoreFailed, results_store
    from workstation.cli import _archive, _settings
    from workstation.sync.outbox import ItemStatus, Outbox

    _, out, _, _ = stored_run
    tmp_path.joinpath("workstation.toml").write_text(
        '[[archives]]\nname = "Down"\nkind = "dicomweb"\nurl = "http://127.0.0.1:9/dicom-web"\ntimeout = 2\n')
    settings = _settings(tmp_path)
    store = results_store(settings, "Down", _archive)
    files = sorted(out.glob("*.dcm"))
    with pytest.raises(StoreFailed, match=r"2 of 2 result object\(s\) not stored yet .*sync run --archive Down"):
        store(files)
    with Outbox(tmp_path / "outbox") as outbox:
        items = outbox.items("Down")
        assert len(items) == 2 and {i.status for i in items} == {ItemStatus.QUEUED}
        assert all(i.path.is_file() for i in items)  # whole copies, waiting for `sync run`


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_ai_run_detections_write_only_an_sr(capsys, tmp_path):
    """A detection plugin has no label map: ``ai run`` writes the findings' SR and no SEG, and prints each box."""
    from pydicom import dcmread

    from tests.synthetic_plugins import write_plugin

    write_plugin(tmp_path / "site", "det", "detections", size=(32, 32, 32), spacing=(8.0, 8.0, 8.0))
    tmp_path.joinpath("workstation.toml").write_text(f'plugin_dirs = ["{tmp_path / "site"}"]\n')
    mr = shared_case("mr-head-t1-7t") / "dicom"
    out = tmp_path / "out"
    assert main(["--home", str(tmp_path), "ai", "run", "det", str(mr), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "finding Lesion" in printed and "size " in printed
    assert not list(out.glob("*.seg.dcm"))
    (sr,) = out.glob("det-*.sr.dcm")
    assert dcmread(sr).Modality == "SR"

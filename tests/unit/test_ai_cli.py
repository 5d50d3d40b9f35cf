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

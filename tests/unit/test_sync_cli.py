"""``workstation sync add / status / run`` against the embedded local archive."""

from __future__ import annotations

import json

from tests.unit.test_sync_outbox import make_dicom
from workstation.cli import main


def test_sync_add_status_run(tmp_path, capsys):
    home = tmp_path / "home"
    files = [str(make_dicom(tmp_path / "src", n)) for n in range(2)]
    assert main(["--home", str(home), "sync", "add", *files, "--archive", "Local"]) == 0
    assert main(["--home", str(home), "sync", "add", files[0], "--archive", "Local"]) == 0  # no-op
    capsys.readouterr()
    assert main(["--home", str(home), "sync", "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["counts"]["queued"] == 2 and len(status["items"]) == 2
    assert main(["--home", str(home), "sync", "run", "--archive", "Local"]) == 0
    assert "sent 2, waiting 0, failed 0" in capsys.readouterr().out
    assert main(["--home", str(home), "sync", "status"]) == 0
    assert capsys.readouterr().out.startswith("queued 0  sending 0  sent 2  failed 0")
    assert main(["--home", str(home), "studies", "--json"]) == 0
    assert sum(s["number_of_instances"] for s in json.loads(capsys.readouterr().out)) == 2


def test_sync_add_not_dicom(tmp_path, capsys):
    bad = tmp_path / "x"
    bad.write_text("x")
    assert main(["--home", str(tmp_path), "sync", "add", str(bad), "--archive", "Local"]) == 1
    assert "not a readable DICOM" in capsys.readouterr().err

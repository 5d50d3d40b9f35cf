"""The ``ai_threads`` setting: read from workstation.toml, the default of ``ai run --threads``, clear errors."""

from __future__ import annotations

import pytest

from workstation.ai.cli import AiCommandError, run_options
from workstation.cli import build_parser, main
from workstation.config import ConfigError, load_settings


def _settings(home, text: str = ""):
    if text:
        home.joinpath("workstation.toml").write_text(text)
    return load_settings({"WORKSTATION_HOME": str(home), "HOME": str(home)})


def test_ai_threads_setting_is_read_and_defaults_to_onnxruntime(tmp_path):
    assert _settings(tmp_path).ai_threads == 0
    assert _settings(tmp_path, "ai_threads = 3\n").ai_threads == 3


@pytest.mark.parametrize("value", ["-1", "2.5", '"four"', "true"])
def test_bad_ai_threads_is_a_clear_error(tmp_path, value):
    with pytest.raises(ConfigError, match="ai_threads must be a whole number, 0 .* or more"):
        _settings(tmp_path, f"ai_threads = {value}\n")


def test_ai_run_threads_default_to_the_setting(tmp_path):
    settings = _settings(tmp_path, "ai_threads = 3\n")
    args = build_parser().parse_args(["ai", "run", "tiny", str(tmp_path), "--out", str(tmp_path / "out")])
    options = run_options(settings, args)
    assert options.threads == 3 and options.allow_accelerators
    args = build_parser().parse_args(["ai", "run", "tiny", str(tmp_path), "--out", "o", "--threads", "1", "--cpu"])
    options = run_options(settings, args)
    assert options.threads == 1 and not options.allow_accelerators  # the option wins over the setting
    args = build_parser().parse_args(["ai", "run", "tiny", str(tmp_path), "--out", "o", "--threads", "-2"])
    with pytest.raises(AiCommandError, match="--threads must be 0 .* got -2"):
        run_options(settings, args)


def test_ai_run_with_negative_threads_fails_in_one_line(capsys, tmp_path):
    out = tmp_path / "out"
    assert main(["--home", str(tmp_path), "ai", "run", "brainchop-tissue", str(tmp_path), "--out", str(out),
                 "--threads", "-1"]) == 1
    err = capsys.readouterr().err
    assert "--threads must be 0 (all cores) or more, got -1" in err and "Traceback" not in err
    assert not out.exists()

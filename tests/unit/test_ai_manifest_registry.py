"""plugin.toml validation (every rejected case names its key) and plugin discovery / model lookup."""

import copy
import tomllib
from pathlib import Path

import pytest

from workstation.ai.manifest import ManifestError, Normalisation, OutputKind, load_manifest, parse_manifest
from workstation.ai.registry import BUILTIN_PLUGINS, ModelNotFound, Plugin, discover, resolve_model

BRAINCHOP = BUILTIN_PLUGINS / "brainchop-tissue" / "plugin.toml"


def _raw() -> dict:
    with open(BRAINCHOP, "rb") as fp:
        return tomllib.load(fp)


def test_builtin_manifest_reads():
    m = load_manifest(BRAINCHOP)
    assert m.id == "brainchop-tissue" and m.output.kind is OutputKind.LABELMAP
    assert m.input.size == (256, 256, 256) and m.input.intensity.normalise is Normalisation.ROBUST_MINMAX
    assert [label.name for label in m.labels] == ["White matter", "Grey matter"]


def _set(raw, path, value):
    node = raw
    *parents, last = path
    for p in parents:
        node = node[p]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value


_DELETE = object()


@pytest.mark.parametrize(("path", "value", "named"), [
    (("colour_scheme",), "x", "colour_scheme: unknown key"),
    (("input", "strides"), [1], "input.strides: unknown key"),
    (("labels", 0, "emoji"), "x", "labels[0].emoji: unknown key"),
    (("version",), 1, "version: expected str"),
    (("input", "spacing_mm"), [1.0, 1.0], "input.spacing_mm: expected 3 values"),
    (("input", "spacing_mm"), [1.0, "a", 1.0], "input.spacing_mm[1]: expected float"),
    (("input", "size"), [256, 256, 256.5], "input.size[2]: expected int"),
    (("input", "modalities"), "MR", "input.modalities: expected an array"),
    (("input", "intensity", "normalise"), "magic", "input.intensity.normalise: expected one of"),
    (("input", "orientation"), "LRA", "input.orientation"),
    (("input", "overlap"), 1.0, "input.overlap"),
    (("input", "patch"), [512, 1, 1], "input.patch"),
    (("output", "kind"), "poem", "output.kind"),
    (("output", "threshold"), True, "output.threshold: expected float"),
    (("output", "nms_iou"), 0.0, "output.nms_iou: must be within (0, 1]"),
    (("output", "nms_iou"), 1.5, "output.nms_iou: must be within (0, 1]"),
    (("output", "nms_iou"), "high", "output.nms_iou: expected float"),
    (("labels", 1, "value"), 1, "labels[1].value"),
    (("labels", 0, "colour"), [0, 0, 256], "labels[0].colour"),
    (("labels", 0, "type", "scheme"), _DELETE, "labels[0].type.scheme: required key is missing"),
    (("model",), "/etc/passwd", "model: must be a file name relative"),
    (("id",), "Bad Id", "id:"),
    (("schema",), 2, "schema:"),
    (("input",), _DELETE, "input: required key is missing"),
])
def test_rejected_manifest_names_the_key(path, value, named):
    raw = copy.deepcopy(_raw())
    _set(raw, path, value)
    with pytest.raises(ManifestError) as info:
        parse_manifest(raw, "somewhere/plugin.toml")
    assert "somewhere/plugin.toml" in str(info.value)
    assert named in str(info.value)


def test_invalid_toml_names_the_file(tmp_path):
    bad = tmp_path / "plugin.toml"
    bad.write_text("id = ")
    with pytest.raises(ManifestError, match="invalid TOML"):
        load_manifest(bad)


def test_discover_lists_good_plugins_and_reports_bad_ones(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    good.joinpath("plugin.toml").write_bytes(BRAINCHOP.read_bytes())
    broken = tmp_path / "broken"
    broken.mkdir()
    broken.joinpath("plugin.toml").write_text('schema = 1\nid = "broken"\nwhat = 1\n')
    reg = discover([tmp_path], entry_points=False)
    assert [p.id for p in reg.plugins] == ["brainchop-tissue"]
    assert len(reg.problems) == 1 and "what: unknown key" in reg.problems[0][1]
    with pytest.raises(KeyError, match="installed: brainchop-tissue"):
        reg.get("nope")


def test_missing_model_names_every_place_looked(tmp_path):
    plugin = Plugin(load_manifest(BRAINCHOP), tmp_path / "plugin", "folder")
    with pytest.raises(ModelNotFound) as info:
        resolve_model(plugin, [tmp_path / "models"])
    msg = str(info.value)
    assert str(tmp_path / "plugin" / "model.onnx") in msg
    assert str(tmp_path / "models" / "brainchop-tissue" / "model.onnx") in msg
    assert "WORKSTATION_MODEL_PATH" in msg


def test_model_found_on_the_search_path(tmp_path):
    plugin = Plugin(load_manifest(BRAINCHOP), tmp_path / "plugin", "folder")
    (tmp_path / "models" / "brainchop-tissue").mkdir(parents=True)
    target = tmp_path / "models" / "brainchop-tissue" / "model.onnx"
    target.write_bytes(b"x")
    assert resolve_model(plugin, [tmp_path / "elsewhere", tmp_path / "models"]) == target


def test_only_plugins_with_a_redistributable_model_ship_it():
    # brainchop's model is found through the search path, never committed; deepbet's (MIT) travel with
    # their licence in plugins/brain-extraction
    shipped = {p.parent.name for p in Path(BUILTIN_PLUGINS).rglob("*.onnx")}
    assert shipped == {"brain-extraction"}
    assert (Path(BUILTIN_PLUGINS) / "brain-extraction" / "LICENSE").is_file()


@pytest.mark.parametrize(("changes", "named"), [
    ({"extra_models": ["bbox.onnx"]}, "extra_models: only a plugin with a hooks module"),
    ({"hooks": "my-hooks"}, "hooks: must name a Python module"),
    ({"hooks": "hooks", "extra_models": ["../bbox.onnx"]}, "extra_models[0]: must be a file name relative"),
    ({"hooks": "hooks", "extra_models": "bbox.onnx"}, "extra_models: expected an array"),
])
def test_hooks_and_extra_models_are_validated(changes, named):
    raw = copy.deepcopy(_raw())
    raw.update(changes)
    with pytest.raises(ManifestError) as info:
        parse_manifest(raw, "p/plugin.toml")
    assert named in str(info.value)


def test_extra_model_found_like_the_main_one(tmp_path):
    raw = copy.deepcopy(_raw())
    raw.update(hooks="hooks", extra_models=["bbox.onnx"])
    plugin = Plugin(parse_manifest(raw), tmp_path / "plugin", "folder")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "bbox.onnx").write_bytes(b"x")
    assert resolve_model(plugin, [tmp_path / "models"], "bbox.onnx") == tmp_path / "models" / "bbox.onnx"
    with pytest.raises(ModelNotFound, match="'model.onnx' not found"):
        resolve_model(plugin, [tmp_path / "models"])

"""The ``plugin.toml`` schema as frozen dataclasses, read strictly.

Every table and key is declared here; an unknown key, a missing required key or a value of the wrong
type raises :class:`ManifestError` naming the file and the key path (e.g. ``input.spacing_mm[2]``).
An example (``plugins/brainchop-tissue/plugin.toml``)::

    schema = 1
    id = "brainchop-tissue"
    version = "1.0.0"
    model = "model.onnx"          # found in the plugin folder, then on the model search path
    [input]
    tensor = "input"
    modalities = ["MR"]
    spacing_mm = [1.0, 1.0, 1.0]  # (i, j, k) = column, row, slice of the model's grid
    orientation = "LIA"           # where the i, j, k axes point: Left, Inferior, Anterior
    size = [256, 256, 256]
    [[labels]]
    value = 1
    ...

A plugin whose pipeline is more than resample -> infer -> argmax names a hooks module and any further
model files it uses (``plugins/brain-extraction``; see :mod:`workstation.ai.hooks`)::

    hooks = "hooks"                      # hooks.py in the plugin folder, imported only when it runs
    extra_models = ["bbox_model.onnx"]   # found like ``model``; every one is opened before the run
"""

from __future__ import annotations

import enum
import re
import tomllib
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path

SCHEMA_VERSION = 1
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_AXES = {"L": "LR", "R": "LR", "A": "AP", "P": "AP", "S": "SI", "I": "SI"}


class ManifestError(ValueError):
    """A plugin.toml that cannot be used; the message names the file and the offending key."""


class Normalisation(enum.Enum):
    NONE = "none"
    MINMAX = "minmax"  # (v - min) / (max - min)
    ROBUST_MINMAX = "robust-minmax"  # the same between two percentiles, clipped to 0..1
    ZSCORE = "zscore"  # (v - mean) / std
    WINDOW = "window"  # (v - low) / (high - low), clipped to 0..1


class Blending(enum.Enum):
    CONSTANT = "constant"
    GAUSSIAN = "gaussian"


class OutputKind(enum.Enum):
    LABELMAP = "labelmap"
    DETECTIONS = "detections"
    HEATMAP = "heatmap"
    CLASSIFICATION = "classification"


class Activation(enum.Enum):
    NONE = "none"  # the model already gives probabilities
    SOFTMAX = "softmax"  # over the channel axis
    SIGMOID = "sigmoid"  # per channel


@dataclass(frozen=True)
class CodeSpec:
    code: str
    scheme: str
    meaning: str


@dataclass(frozen=True)
class LabelSpec:
    value: int
    name: str
    colour: tuple[int, int, int]
    category: CodeSpec
    type: CodeSpec


@dataclass(frozen=True)
class IntensitySpec:
    normalise: Normalisation = Normalisation.ROBUST_MINMAX
    percentiles: tuple[float, float] = (0.5, 99.5)
    window: tuple[float, float] | None = None  # (low, high) for ``window``


@dataclass(frozen=True)
class InputSpec:
    tensor: str
    modalities: tuple[str, ...]
    spacing_mm: tuple[float, float, float]
    body_part: str = ""
    orientation: str = "LPS"
    size: tuple[int, int, int] | None = None  # the model grid (i, j, k); None: the volume's extent
    patch: tuple[int, int, int] | None = None  # sliding-window patch (i, j, k); None: the whole grid
    overlap: float = 0.25
    blending: Blending = Blending.GAUSSIAN
    channels: int = 1
    intensity: IntensitySpec = field(default_factory=IntensitySpec)


@dataclass(frozen=True)
class OutputSpec:
    tensor: str
    kind: OutputKind = OutputKind.LABELMAP
    activation: Activation = Activation.SOFTMAX
    threshold: float = 0.5  # sigmoid outputs: a voxel belongs to a label above this
    min_volume_mm3: float = 0.0  # smaller connected regions give no finding
    max_findings_per_label: int = 10
    nms_iou: float = 0.5  # detections: a box overlapping a better one of its label by more than this is dropped


@dataclass(frozen=True)
class Manifest:
    schema: int
    id: str
    version: str
    title: str
    model: str
    input: InputSpec
    output: OutputSpec
    labels: tuple[LabelSpec, ...]
    description: str = ""
    licence: str = ""
    intended_use: str = ""
    hooks: str = ""  # optional module ``<hooks>.py`` in the plugin folder, imported only when the plugin runs
    extra_models: tuple[str, ...] = ()  # further model files a hooks module uses (found like ``model``)

    def label(self, value: int) -> LabelSpec:
        for spec in self.labels:
            if spec.value == value:
                return spec
        raise KeyError(value)


def load_manifest(path: Path | str) -> Manifest:
    """Read and validate a plugin.toml."""
    path = Path(path)
    try:
        with open(path, "rb") as fp:
            raw = tomllib.load(fp)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_manifest(raw, str(path))


def parse_manifest(raw: dict, source: str = "plugin.toml") -> Manifest:
    """Validate a parsed TOML document; ``source`` names it in errors."""
    manifest = _build(Manifest, raw, "", source)
    _check_semantics(manifest, source)
    return manifest


# -- the strict, type-driven reader ------------------------------------------------------------------------
def _fail(source: str, key: str, why: str) -> typing.NoReturn:
    raise ManifestError(f"{source}: {key or '(top level)'}: {why}")


def _build(cls: type, raw: object, key: str, source: str):
    if not isinstance(raw, dict):
        _fail(source, key, f"expected a table, got {_kind(raw)}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    for name in raw:
        if name not in known:
            _fail(source, _join(key, name), f"unknown key (expected one of {', '.join(sorted(known))})")
    values = {}
    for f in fields(cls):
        sub = _join(key, f.name)
        if f.name in raw:
            values[f.name] = _value(hints[f.name], raw[f.name], sub, source)
        elif f.default is MISSING and f.default_factory is MISSING:
            _fail(source, sub, "required key is missing")
    return cls(**values)


def _value(tp, raw: object, key: str, source: str):
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _value(inner[0], raw, key, source)
    if origin is tuple:
        return _tuple(args, raw, key, source)
    if is_dataclass(tp):
        return _build(tp, raw, key, source)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        allowed = [m.value for m in tp]
        if raw not in allowed:
            _fail(source, key, f"expected one of {', '.join(map(repr, allowed))}, got {raw!r}")
        return tp(raw)
    if tp is float and isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw)
    if tp in (str, int, bool) and type(raw) is tp:
        return raw
    _fail(source, key, f"expected {tp.__name__}, got {_kind(raw)} {raw!r}")


def _tuple(args: tuple, raw: object, key: str, source: str) -> tuple:
    if not isinstance(raw, list):
        _fail(source, key, f"expected an array, got {_kind(raw)}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_value(args[0], v, f"{key}[{n}]", source) for n, v in enumerate(raw))
    if len(raw) != len(args):
        _fail(source, key, f"expected {len(args)} values, got {len(raw)}")
    return tuple(_value(a, v, f"{key}[{n}]", source) for n, (a, v) in enumerate(zip(args, raw)))


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _kind(raw: object) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number"}.get(type(raw), type(raw).__name__)


# -- rules beyond types ------------------------------------------------------------------------------------
def _check_semantics(m: Manifest, source: str) -> None:
    if m.schema != SCHEMA_VERSION:
        _fail(source, "schema", f"this workstation reads schema {SCHEMA_VERSION}, got {m.schema}")
    if not _ID.match(m.id):
        _fail(source, "id", f"must be lower-case letters, digits, '.', '_' or '-' (got {m.id!r})")
    for name in ("version", "title", "model"):
        if not getattr(m, name).strip():
            _fail(source, name, "must not be empty")
    for key, name in [("model", m.model)] + [(f"extra_models[{n}]", x) for n, x in enumerate(m.extra_models)]:
        if not name.strip() or Path(name).is_absolute() or ".." in Path(name).parts:
            _fail(source, key, f"must be a file name relative to the plugin folder, got {name!r}")
    if m.hooks and not m.hooks.isidentifier():
        _fail(source, "hooks", f"must name a Python module in the plugin folder (e.g. \"hooks\"), got {m.hooks!r}")
    if m.extra_models and not m.hooks:
        _fail(source, "extra_models", "only a plugin with a hooks module can use extra models")
    _check_input(m.input, source)
    if not 0.0 <= m.output.threshold <= 1.0:
        _fail(source, "output.threshold", f"must be within 0..1, got {m.output.threshold}")
    if not 0.0 < m.output.nms_iou <= 1.0:
        _fail(source, "output.nms_iou", f"must be within (0, 1] (box overlap), got {m.output.nms_iou}")
    if m.output.max_findings_per_label < 0 or m.output.min_volume_mm3 < 0:
        _fail(source, "output", "max_findings_per_label and min_volume_mm3 must not be negative")
    if not m.labels:
        _fail(source, "labels", "at least one [[labels]] entry is required")
    seen: set[int] = set()
    for n, label in enumerate(m.labels):
        if label.value < 1 or label.value in seen:
            _fail(source, f"labels[{n}].value", f"must be a unique integer >= 1 (0 is background), got {label.value}")
        seen.add(label.value)
        if not all(0 <= c <= 255 for c in label.colour):
            _fail(source, f"labels[{n}].colour", f"each value must be within 0..255, got {list(label.colour)}")


def _check_input(spec: InputSpec, source: str) -> None:
    if not spec.modalities:
        _fail(source, "input.modalities", "must name at least one modality")
    if any(s <= 0 for s in spec.spacing_mm):
        _fail(source, "input.spacing_mm", f"must be positive, got {list(spec.spacing_mm)}")
    letters = spec.orientation.upper()
    if len(letters) != 3 or any(c not in _AXES for c in letters) or len({_AXES[c] for c in letters}) != 3:
        _fail(source, "input.orientation", f"must be three letters, one each of L/R, A/P, S/I (got {spec.orientation!r})")
    for name in ("size", "patch"):
        value = getattr(spec, name)
        if value is not None and any(v < 1 for v in value):
            _fail(source, f"input.{name}", f"must be positive, got {list(value)}")
    if spec.patch is not None and spec.size is not None and any(p > s for p, s in zip(spec.patch, spec.size)):
        _fail(source, "input.patch", f"{list(spec.patch)} is larger than input.size {list(spec.size)}")
    if not 0.0 <= spec.overlap < 1.0:
        _fail(source, "input.overlap", f"must be within 0 (inclusive) and 1, got {spec.overlap}")
    if spec.channels != 1:
        _fail(source, "input.channels", f"only single-channel models are supported, got {spec.channels}")
    lo, hi = spec.intensity.percentiles
    if not 0.0 <= lo < hi <= 100.0:
        _fail(source, "input.intensity.percentiles", f"must be 0 <= low < high <= 100, got {[lo, hi]}")
    if spec.intensity.normalise is Normalisation.WINDOW and spec.intensity.window is None:
        _fail(source, "input.intensity.window", "required when normalise = \"window\"")

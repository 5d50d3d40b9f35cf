"""Label schemas: the segments of a labelling project, their codes and colours, the tools allowed, the
attributes each finding must carry, and the instructions shown to the annotator.

Schemas are TOML data (``resources/label_schemas/<name>.toml``, or any file).  The loader is strict: an
unknown key, a missing key or a value of the wrong kind is a :class:`SchemaError` that names the file and
the key, so a typing mistake never silently drops a rule.
"""

from __future__ import annotations

import enum
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from workstation.model.labelmap import Algorithm, Code, Segment

__all__ = ["AttributeKind", "AttributeSpec", "LabelSchema", "SchemaError", "SchemaSegment", "Tool",
           "available_schemas", "load_schema", "schema_dir"]


def schema_dir() -> Path:
    """The folder of the schemas shipped with the workstation."""
    return Path(__file__).resolve().parents[2] / "resources" / "label_schemas"


class SchemaError(ValueError):
    """A schema file with an error; the message names the file and the key."""


class Tool(enum.Enum):
    BRUSH = "brush"
    ERASER = "eraser"
    HU_BRUSH = "hu_brush"
    REGION_GROW = "region_grow"
    POLYGON = "polygon"
    FREEHAND = "freehand"
    BOX_2D = "box_2d"
    BOX_3D = "box_3d"
    POINT = "point"
    INTERPOLATE = "interpolate"
    SMOOTH = "smooth"
    REMOVE_ISLANDS = "remove_islands"
    FROM_AI = "from_ai"


class AttributeKind(enum.Enum):
    CHOICE = "choice"  # one of ``choices``
    SCALE = "scale"  # an integer from ``min`` to ``max``
    TEXT = "text"


@dataclass(frozen=True)
class AttributeSpec:
    key: str
    title: str
    kind: AttributeKind
    choices: tuple[str, ...] = ()
    minimum: int = 0
    maximum: int = 0
    labels: tuple[str, ...] = ()  # one per scale value (may be empty strings)
    required: bool = True

    def check(self, value: object) -> None:
        """ValueError naming the attribute when ``value`` is not allowed."""
        if self.kind is AttributeKind.CHOICE and value not in self.choices:
            raise ValueError(f"{self.key}: {value!r} is not one of {list(self.choices)}")
        if self.kind is AttributeKind.SCALE and (isinstance(value, bool) or not isinstance(value, int)
                                                 or not self.minimum <= value <= self.maximum):
            raise ValueError(f"{self.key}: {value!r} is not an integer from {self.minimum} to {self.maximum}")
        if self.kind is AttributeKind.TEXT and not isinstance(value, str):
            raise ValueError(f"{self.key}: expected text, got {value!r}")


@dataclass(frozen=True)
class SchemaSegment:
    segment: Segment
    tools: tuple[Tool, ...]
    attributes: tuple[str, ...]  # keys of the attributes every finding of this segment needs


@dataclass(frozen=True)
class LabelSchema:
    name: str
    title: str
    version: str
    instructions: str
    modalities: tuple[str, ...]
    segments: tuple[SchemaSegment, ...]
    attributes: tuple[AttributeSpec, ...]
    source: str = ""

    def segment(self, name_or_number: str | int) -> SchemaSegment:
        for s in self.segments:
            if name_or_number in (s.segment.number, s.segment.name):
                return s
        raise KeyError(f"schema {self.name!r} has no segment {name_or_number!r}")

    def attribute(self, key: str) -> AttributeSpec:
        for a in self.attributes:
            if a.key == key:
                return a
        raise KeyError(f"schema {self.name!r} has no attribute {key!r}")

    def model_segments(self, algorithm: Algorithm | None = None) -> tuple[Segment, ...]:
        """The schema's segments as model Segments (optionally stamped with an algorithm)."""
        if algorithm is None:
            return tuple(s.segment for s in self.segments)
        return tuple(Segment(s.segment.number, s.segment.name, s.segment.colour, s.segment.category,
                             s.segment.type, algorithm) for s in self.segments)

    def missing_attributes(self, segment: str | int, values: Mapping[str, object]) -> list[str]:
        """The required attributes of a finding of ``segment`` that ``values`` lacks; raises on a bad value."""
        missing = []
        for key in self.segment(segment).attributes:
            spec = self.attribute(key)
            if key not in values:
                if spec.required:
                    missing.append(key)
                continue
            spec.check(values[key])
        return missing


# -- loading -------------------------------------------------------------------------------------------
def available_schemas() -> list[str]:
    return sorted(p.stem for p in schema_dir().glob("*.toml"))


def load_schema(name_or_path: str | Path) -> LabelSchema:
    """A shipped schema by name (``lung-nodule``) or a schema file by path."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = schema_dir() / f"{name_or_path}.toml"
        if not path.exists():
            raise SchemaError(f"no label schema named {str(name_or_path)!r} (have: {', '.join(available_schemas())})")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SchemaError(f"{path}: cannot read the schema ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SchemaError(f"{path}: not valid TOML ({exc})") from None
    try:
        return _schema(data, str(path))
    except SchemaError as exc:
        raise SchemaError(f"{path}: {exc}") from None


class _Table:
    """A TOML table read strictly: every key must be taken; leftovers are errors naming them."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise SchemaError(f"{where}: expected a table, got {type(data).__name__}")
        self.data, self.where, self.taken = data, where, set()

    def get(self, key: str, kind: type | tuple, default: object = ...) -> object:
        self.taken.add(key)
        if key not in self.data:
            if default is ...:
                raise SchemaError(f"{self.where}: missing key {key!r}")
            return default
        value = self.data[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise SchemaError(f"{self.where}.{key}: expected {_kind_name(kind)}, got {value!r}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.taken)
        if unknown:
            raise SchemaError(f"{self.where}: unknown key {unknown[0]!r}" + (f" (and {unknown[1:]})" if unknown[1:] else ""))


def _kind_name(kind: type | tuple) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "text", int: "an integer", list: "a list", dict: "a table", bool: "true or false"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _schema(data: dict, source: str) -> LabelSchema:
    top = _Table(data, "schema file")
    head = _Table(top.get("schema", dict), "[schema]")
    raw_attrs = top.get("attributes", dict, {})
    attributes = tuple(_attribute(key, value) for key, value in raw_attrs.items())
    keys = {a.key for a in attributes}
    segments = tuple(_segment(s, n, keys) for n, s in enumerate(top.get("segments", list)))
    top.done()
    schema = LabelSchema(
        name=head.get("name", str), title=head.get("title", str), version=str(head.get("version", (str, int))),
        instructions=str(head.get("instructions", str, "")).strip(),
        modalities=tuple(_strings(head.get("modalities", list, []), "[schema].modalities")),
        segments=segments, attributes=attributes, source=source)
    head.done()
    if not segments:
        raise SchemaError("a schema needs at least one [[segments]] entry")
    numbers = [s.segment.number for s in segments]
    if len(set(numbers)) != len(numbers):
        raise SchemaError(f"segment numbers must be unique, got {numbers}")
    return schema


def _strings(values: list, where: str) -> list[str]:
    if not all(isinstance(v, str) for v in values):
        raise SchemaError(f"{where}: expected a list of text")
    return values


def _segment(data: object, n: int, attribute_keys: set[str]) -> SchemaSegment:
    where = f"segments[{n}]"
    t = _Table(data, where)
    colour = t.get("colour", list)
    tools = []
    for name in _strings(t.get("tools", list), f"{where}.tools"):
        try:
            tools.append(Tool(name))
        except ValueError:
            raise SchemaError(f"{where}.tools: unknown tool {name!r} (known: {[x.value for x in Tool]})") from None
    attrs = tuple(_strings(t.get("attributes", list, []), f"{where}.attributes"))
    for key in attrs:
        if key not in attribute_keys:
            raise SchemaError(f"{where}.attributes: {key!r} is not defined under [attributes]")
    try:
        segment = Segment(t.get("number", int), t.get("name", str), tuple(colour),  # type: ignore[arg-type]
                          _code(t.get("category", dict), f"{where}.category"),
                          _code(t.get("type", dict), f"{where}.type"))
    except ValueError as exc:
        raise SchemaError(f"{where}: {exc}") from None
    t.done()
    return SchemaSegment(segment, tuple(tools), attrs)


def _code(data: dict, where: str) -> Code:
    t = _Table(data, where)
    value, scheme, meaning = t.get("value", str), t.get("scheme", str), t.get("meaning", str)
    t.done()
    try:
        return Code(value, scheme, meaning)
    except ValueError as exc:
        raise SchemaError(f"{where}: {exc}") from None


def _attribute(key: str, data: object) -> AttributeSpec:
    where = f"[attributes.{key}]"
    t = _Table(data, where)
    title = t.get("title", str)
    raw_kind = t.get("kind", str)
    try:
        kind = AttributeKind(raw_kind)
    except ValueError:
        raise SchemaError(f"{where}.kind: unknown kind {raw_kind!r} (known: {[k.value for k in AttributeKind]})") from None
    required = t.get("required", bool, True)
    choices = tuple(_strings(t.get("choices", list, []), f"{where}.choices"))
    labels = tuple(_strings(t.get("labels", list, []), f"{where}.labels"))
    low, high = t.get("min", int, 0), t.get("max", int, 0)
    t.done()
    if kind is AttributeKind.CHOICE and not choices:
        raise SchemaError(f"{where}: a choice needs a non-empty 'choices' list")
    if kind is AttributeKind.SCALE:
        if high <= low:
            raise SchemaError(f"{where}: a scale needs min < max, got {low}..{high}")
        if labels and len(labels) != high - low + 1:
            raise SchemaError(f"{where}.labels: expected {high - low + 1} labels, got {len(labels)}")
    return AttributeSpec(key, title, kind, choices, low, high, labels, required)

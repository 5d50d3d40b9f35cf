"""Label schemas: the shipped lung-nodule schema and the strict loader."""

from __future__ import annotations

import pytest

from workstation.labels.schema import AttributeKind, SchemaError, Tool, available_schemas, load_schema, schema_dir


def test_lung_nodule_schema():
    schema = load_schema("lung-nodule")
    assert "lung-nodule" in available_schemas()
    nodule = schema.segment("Lung nodule")
    assert nodule.segment.number == 1 and nodule.segment.type.value == "27925004"
    assert nodule.segment.category.scheme == "SCT" and nodule.segment.colour == (255, 140, 0)
    assert Tool.BRUSH in nodule.tools and Tool.POLYGON in nodule.tools
    assert schema.attribute("nodule_type").choices == ("solid", "part-solid", "ground-glass")
    malignancy = schema.attribute("malignancy")
    assert malignancy.kind is AttributeKind.SCALE and (malignancy.minimum, malignancy.maximum) == (1, 5)
    lidc = {"subtlety", "internal_structure", "calcification", "sphericity", "margin", "lobulation",
            "spiculation", "texture", "malignancy"}
    assert lidc <= set(nodule.attributes)
    assert "Outline every lung nodule" in schema.instructions
    assert [s.number for s in schema.model_segments()] == [1, 2]


def test_required_attributes_are_checked():
    schema = load_schema("lung-nodule")
    values = {"nodule_type": "solid", "malignancy": 4}
    missing = schema.missing_attributes(1, values)
    assert "subtlety" in missing and "malignancy" not in missing
    with pytest.raises(ValueError, match="malignancy: 6 is not an integer from 1 to 5"):
        schema.missing_attributes(1, {"malignancy": 6})
    with pytest.raises(ValueError, match="nodule_type: 'cystic'"):
        schema.missing_attributes(1, {"nodule_type": "cystic"})
    assert schema.missing_attributes("Lung", {}) == []


def test_load_from_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text((schema_dir() / "lung-nodule.toml").read_text().replace('name = "lung-nodule"', 'name = "mine"'))
    assert load_schema(path).name == "mine" and load_schema(str(path)).source == str(path)


@pytest.mark.parametrize(("old", "new", "message"), [
    ('modalities = ["CT"]', 'modalities = ["CT"]\ncolor = 1', r"\[schema\]: unknown key 'color'"),
    ("number = 2\n", "number = 2\nopacity = 0.5\n", r"segments\[1\]: unknown key 'opacity'"),
    ('kind = "choice"', 'kind = "choice"\nmulti = true', r"\[attributes.nodule_type\]: unknown key 'multi'"),
    ('"brush", "eraser", "hu_brush"', '"brush", "lasso"', r"unknown tool 'lasso'"),
    ('"nodule_type", "subtlety"', '"nodule_type", "subtletty"', r"'subtletty' is not defined under \[attributes\]"),
    ("number = 2\n", "number = 1\n", "segment numbers must be unique"),
    ('colour = [128, 174, 128]', 'colour = [128, 174, 300]', "colour must be three values"),
    ('name = "lung-nodule"', 'name = 5', r"\[schema\].name: expected text"),
    ('scheme = "SCT", meaning = "Nodule"', 'scheme = "SCT", meaning = "Nodule", extra = "x"',
     r"segments\[0\].type: unknown key 'extra'"),
    ("max = 4", "max = 1", "a scale needs min < max"),
])
def test_schema_errors_name_the_key(tmp_path, old, new, message):
    text = (schema_dir() / "lung-nodule.toml").read_text()
    assert old in text
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(SchemaError, match=message) as info:
        load_schema(path)
    assert str(path) in str(info.value)


def test_not_toml_and_unknown_name(tmp_path):
    bad = tmp_path / "x.toml"
    bad.write_text("[schema\nname=")
    with pytest.raises(SchemaError, match="not valid TOML"):
        load_schema(bad)
    with pytest.raises(SchemaError, match="no label schema named 'nope'"):
        load_schema("nope")

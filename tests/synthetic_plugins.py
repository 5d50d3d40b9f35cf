"""Small real ONNX models, built with onnx.helper, and plugin folders around them (tests only).

* ``detector``: finds the voxels above 0.5 (after normalisation) and outputs their bounding box in model-grid
  indices, computed by the graph, plus four more rows made from it: a 1-voxel-shifted copy (NMS must drop it),
  a far box below the score threshold, a far box above it, and the same box as a second label.
* ``heatmap``: the normalised input itself, one channel (so the map must land back on the source voxels).
* ``classifier``: logits ``[3 * max(x), 1]`` (softmax gives 0.881 / 0.119 when the image has a bright voxel).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from workstation.ai.manifest import load_manifest
from workstation.ai.registry import Plugin

OPSET = 17
FAR_BOX = (1.0, 1.0, 1.0, 4.0, 4.0, 4.0)
#: (extra offset added to the found box, score, label) of each output row: see the module docstring
DETECTOR_ROWS = ((0.0, 0.9, 1), (1.0, 0.8, 1), (None, 0.3, 1), (None, 0.6, 1), (0.0, 0.7, 2))


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def detector_model(path: Path, size_ijk: tuple[int, int, int]) -> Path:
    i_n, j_n, k_n = size_ijk
    k, j, i = np.meshgrid(np.arange(k_n), np.arange(j_n), np.arange(i_n), indexing="ij")
    inits = [numpy_helper.from_array(a.astype(np.float32)[None, None], name) for a, name in ((i, "I"), (j, "J"), (k, "K"))]
    inits += [numpy_helper.from_array(np.array(v, np.float32), n) for v, n in ((0.5, "half"), (1e9, "big"), (-1e9, "small"))]
    scale = np.array([[0.0 if off is None else 1.0] * 6 for off, _, _ in DETECTOR_ROWS], np.float32)
    shift = np.array([FAR_BOX if off is None else [off] * 6 for off, _, _ in DETECTOR_ROWS], np.float32)
    shift[3] = (i_n - 5.0, j_n - 5.0, k_n - 5.0, i_n - 2.0, j_n - 2.0, k_n - 2.0)  # the far box above threshold
    tail = np.array([[s, lab] for _, s, lab in DETECTOR_ROWS], np.float32)
    inits += [numpy_helper.from_array(a, n) for a, n in ((scale, "scale"), (shift, "shift"), (tail, "tail"),
                                                          (np.array([1], np.int64), "one"))]
    nodes = [helper.make_node("Greater", ["input", "half"], ["mask"])]
    corners = []
    for axis in "IJK":
        for op, fill in (("ReduceMin", "big"), ("ReduceMax", "small")):
            nodes.append(helper.make_node("Where", ["mask", axis, fill], [f"{axis}{op}w"]))
            nodes.append(helper.make_node(op, [f"{axis}{op}w"], [f"{axis}{op}s"], keepdims=0))
            nodes.append(helper.make_node("Reshape", [f"{axis}{op}s", "one"], [f"{axis}{op}"]))
    corners = [f"{a}ReduceMin" for a in "IJK"] + [f"{a}ReduceMax" for a in "IJK"]
    nodes += [helper.make_node("Concat", corners, ["box"], axis=0),
              helper.make_node("Mul", ["box", "scale"], ["scaled"]),
              helper.make_node("Add", ["scaled", "shift"], ["geometry"]),
              helper.make_node("Concat", ["geometry", "tail"], ["rows"], axis=1),
              helper.make_node("Unsqueeze", ["rows", "zero"], ["output"])]
    inits.append(numpy_helper.from_array(np.array([0], np.int64), "zero"))
    graph = helper.make_graph(nodes, "detector", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                 [1, 1, k_n, j_n, i_n])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, len(DETECTOR_ROWS), 8])],
                              inits)
    return _save(graph, path)


def heatmap_model(path: Path) -> Path:
    dims = [1, 1, "d", "h", "w"]
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "heatmap",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, dims)])
    return _save(graph, path)


def classifier_model(path: Path) -> Path:
    inits = [numpy_helper.from_array(np.array([3.0], np.float32), "three"),
             numpy_helper.from_array(np.array([1.0], np.float32), "onef"),
             numpy_helper.from_array(np.array([1, 2], np.int64), "shape")]
    nodes = [helper.make_node("ReduceMax", ["input"], ["peak"], keepdims=0),
             helper.make_node("Mul", ["peak", "three"], ["abnormal"]),
             helper.make_node("Concat", ["abnormal", "onef"], ["logits"], axis=0),
             helper.make_node("Reshape", ["logits", "shape"], ["output"])]
    graph = helper.make_graph(nodes, "classifier",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, "d", "h", "w"])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 2])], inits)
    return _save(graph, path)


_LABEL = """
[[labels]]
value = {value}
name = "{name}"
colour = {colour}
category = {{ code = "49755003", scheme = "SCT", meaning = "Morphologically Altered Structure" }}
type = {{ code = "{code}", scheme = "SCT", meaning = "{name}" }}
"""


def write_plugin(folder: Path, plugin_id: str, kind: str, *, modalities=("MR",), size=None, spacing=(1.0, 1.0, 1.0),
                 patch=None, activation="none", threshold=0.5, labels=(("Lesion", (255, 200, 0)), ("Mass", (0, 200, 255))),
                 normalise="minmax", body_part="") -> Plugin:
    """A plugin folder ``folder/plugin_id`` with its plugin.toml and the model for ``kind``."""
    root = folder / plugin_id
    root.mkdir(parents=True, exist_ok=True)
    lines = ["schema = 1", f'id = "{plugin_id}"', 'version = "0.3.1"', f'title = "Test {kind}"',
             'model = "model.onnx"', "", "[input]", 'tensor = "input"',
             f"modalities = [{', '.join(repr(m).replace(chr(39), chr(34)) for m in modalities)}]",
             f"spacing_mm = {list(spacing)}", 'orientation = "LPS"']
    if body_part:
        lines.append(f'body_part = "{body_part}"')
    if size is not None:
        lines.append(f"size = {list(size)}")
    if patch is not None:
        lines += [f"patch = {list(patch)}", "overlap = 0.5"]
    lines += ["", "[input.intensity]", f'normalise = "{normalise}"', "", "[output]", 'tensor = "output"',
              f'kind = "{kind}"', f'activation = "{activation}"', f"threshold = {threshold}"]
    text = "\n".join(lines) + "\n"
    for n, (name, colour) in enumerate(labels, start=1):
        text += _LABEL.format(value=n, name=name, colour=list(colour), code=str(52988006 + n))
    (root / "plugin.toml").write_text(text)
    model = root / "model.onnx"
    if kind == "detections":
        detector_model(model, tuple(size))
    elif kind == "heatmap":
        heatmap_model(model)
    else:
        classifier_model(model)
    return Plugin(load_manifest(root / "plugin.toml"), root, "folder")

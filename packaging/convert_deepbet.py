"""Convert deepbet's two TorchScript networks to ONNX for ``plugins/brain-extraction``.

deepbet (https://github.com/wwu-mmll/deepbet, MIT, Medical Machine Learning Lab, University of Münster)
ships ``data/models/bbox_model.pt`` (brain bounding box on a 128^3 volume) and ``data/models/model.pt``
(brain mask on the 256^3 crop).  This script installs nothing: run it with an interpreter that can
import ``torch``, ``onnx`` and ``onnxruntime``, e.g. with torch unpacked into a throwaway folder::

    pip download deepbet==1.0.2 --no-deps -d /tmp/deepbet_dl
    pip install torch --target /tmp/torchlib          # never into the project's environment
    PYTHONPATH=/tmp/torchlib .venv/bin/python packaging/convert_deepbet.py /tmp/deepbet_dl/deepbet-1.0.2-py3-none-any.whl

It writes ``bbox_model.onnx``, ``model.onnx`` and ``LICENSE`` (deepbet's licence text from the wheel)
into ``plugins/brain-extraction/`` and prints, for each network, the largest absolute difference
between the ONNX (onnxruntime) and TorchScript outputs on the same random input.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "plugins" / "brain-extraction"
#: network file in the wheel -> (ONNX file name, the cube edge it was trained on)
NETWORKS = {"data/models/bbox_model.pt": ("bbox_model.onnx", 128), "data/models/model.pt": ("model.onnx", 256)}
OPSET = 17
TOLERANCE = 1e-2  # both networks end in a softmax: outputs are probabilities (float32 reorderings in
#                    the instance norms of a 256^3 net give a few 1e-3 on random input)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="deepbet-1.0.2-py3-none-any.whl")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--check-size", type=int, default=0,
                        help="cube edge of the random verification input (default: each network's own size)")
    args = parser.parse_args(argv)
    try:
        import onnxruntime  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        print(f"error: {exc.name} is not importable; put torch on PYTHONPATH (see this script's docstring)",
              file=sys.stderr)
        return 2
    if not zipfile.is_zipfile(args.wheel):
        print(f"error: {args.wheel}: not a wheel (zip) file", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(args.wheel) as wheel, tempfile.TemporaryDirectory() as tmp:
        names = set(wheel.namelist())
        missing = [n for n in NETWORKS if n not in names]
        licence = next((n for n in names if n.endswith(".dist-info/LICENSE")), None)
        if missing or licence is None:
            print(f"error: {args.wheel} lacks {', '.join(missing) or 'a dist-info LICENSE'}", file=sys.stderr)
            return 2
        for member, (onnx_name, edge) in NETWORKS.items():
            source = Path(wheel.extract(member, tmp))
            target = args.out / onnx_name
            export(source, target, edge)
            diff, flipped = verify(source, target, args.check_size or edge)
            print(f"{member} -> {target}: opset {OPSET}, max |onnx - torchscript| = {diff:.3g}, "
                  f"voxels whose argmax differs: {flipped:.2e}")
            if diff > TOLERANCE:
                print(f"error: difference {diff:.3g} exceeds {TOLERANCE}", file=sys.stderr)
                return 1
        (args.out / "LICENSE").write_bytes(wheel.read(licence))
        print(f"{licence} -> {args.out / 'LICENSE'}")
    return 0


def export(source: Path, target: Path, edge: int) -> None:
    """TorchScript -> ONNX with input ``input`` and output ``output``, batch and spatial axes dynamic."""
    import torch

    model = torch.jit.load(str(source), map_location="cpu").eval()
    example = torch.zeros(1, 1, edge, edge, edge)
    dynamic = {0: "batch", 2: "depth", 3: "height", 4: "width"}
    partial = target.with_suffix(".partial")
    with torch.no_grad():
        torch.onnx.export(model, (example,), str(partial), input_names=["input"], output_names=["output"],
                          opset_version=OPSET, dynamic_axes={"input": dynamic, "output": dynamic},
                          do_constant_folding=True, dynamo=False)
    _check_onnx(partial)
    partial.replace(target)


def _check_onnx(path: Path) -> None:
    import onnx

    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < OPSET:
        raise RuntimeError(f"{path}: exported with opset {opset}, need >= {OPSET}")


def verify(source: Path, target: Path, edge: int, seed: int = 0) -> tuple[float, float]:
    """Largest absolute difference between TorchScript and onnxruntime outputs on one random input,
    and the fraction of voxels whose most probable class differs."""
    import onnxruntime as ort
    import torch

    x = np.random.default_rng(seed).normal(0.449, 0.226, (1, 1, edge, edge, edge)).astype(np.float32)
    model = torch.jit.load(str(source), map_location="cpu").eval()
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    got = session.run(["output"], {"input": x})[0]
    if got.shape != expected.shape:
        raise RuntimeError(f"{target}: output shape {got.shape} differs from TorchScript's {expected.shape}")
    flipped = float(np.mean(got.argmax(axis=1) != expected.argmax(axis=1)))
    return float(np.abs(got - expected).max()), flipped


if __name__ == "__main__":
    sys.exit(main())

"""onnxruntime sessions (best execution provider, thread count) and sliding-window inference."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from workstation.model.tasks import Cancelled, CancelToken, Progress, ProgressFn

#: Preferred execution providers, best first; the CPU provider is always the fallback.
PROVIDER_PREFERENCE = ("CUDAExecutionProvider", "ROCMExecutionProvider", "OpenVINOExecutionProvider",
                       "CoreMLExecutionProvider", "CPUExecutionProvider")

Predict = Callable[[np.ndarray], np.ndarray]  # [1, 1, k, j, i] float32 -> [1, C, k, j, i] float32


class ModelLoadError(RuntimeError):
    """The model file is unreadable, corrupt, or does not take the input the manifest describes."""


class ModelInputError(ModelLoadError):
    """The tensor the plugin prepared does not have the shape the model's input requires."""


def choose_providers(available: Sequence[str], allow_accelerators: bool = True) -> list[str]:
    """The providers to ask for, best first: accelerators the machine has (if allowed), then CPU."""
    wanted = PROVIDER_PREFERENCE if allow_accelerators else ("CPUExecutionProvider",)
    return [p for p in wanted if p in available] or ["CPUExecutionProvider"]


class OnnxModel:
    """One onnxruntime session; :meth:`predict` honours a cancel token (the run is terminated)."""

    def __init__(self, path: Path, input_name: str, output_name: str, *, threads: int = 0,
                 allow_accelerators: bool = True) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(0, int(threads))
        options.inter_op_num_threads = 1
        providers = choose_providers(ort.get_available_providers(), allow_accelerators)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise ModelLoadError(f"{path}: not a usable ONNX model: {str(exc).splitlines()[0]}") from None
        self.providers = tuple(self.session.get_providers())
        self._ort = ort
        self.path = Path(path)
        self.input_name, self.output_name = input_name, output_name
        self._check_names(path)
        self._static = self.input_shape()

    def _check_names(self, path: Path) -> None:
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        if self.input_name not in inputs:
            raise ModelLoadError(f"{path}: no input tensor {self.input_name!r} (the model has {sorted(inputs)})")
        if self.output_name not in outputs:
            raise ModelLoadError(f"{path}: no output tensor {self.output_name!r} (the model has {sorted(outputs)})")
        rank = len(inputs[self.input_name].shape)
        if rank != 5:
            raise ModelLoadError(f"{path}: input {self.input_name!r} has rank {rank}; expected [N, C, D, H, W]")

    def input_shape(self) -> tuple:
        """Static input dimensions (None where symbolic)."""
        shape = next(i.shape for i in self.session.get_inputs() if i.name == self.input_name)
        return tuple(d if isinstance(d, int) else None for d in shape)

    def check_input(self, shape: tuple[int, ...]) -> None:
        """Raise :class:`ModelInputError` when ``shape`` contradicts a fixed dimension of the model's input."""
        fixed = self._static
        if len(shape) != len(fixed) or any(f is not None and f != n for f, n in zip(fixed[1:], shape[1:])):
            dims = [d if d is not None else "any" for d in fixed]
            raise ModelInputError(f"{self.path.name}: the model takes {self.input_name!r} of shape {dims}, but the "
                                  f"plugin prepared {list(shape)}; input.size / input.patch in plugin.toml do not "
                                  "match the model")

    def predict(self, x: np.ndarray, cancel: CancelToken | None = None) -> np.ndarray:
        self.check_input(x.shape)
        run_options = self._ort.RunOptions()
        done = threading.Event()

        def watch() -> None:  # onnxruntime can stop a run from another thread
            while not done.wait(0.1):
                if cancel is not None and cancel.cancelled:
                    run_options.terminate = True
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            return self.session.run([self.output_name], {self.input_name: x}, run_options)[0]
        except Exception:
            if cancel is not None and cancel.cancelled:
                raise Cancelled() from None
            raise
        finally:
            done.set()
            watcher.join()


def window_starts(length: int, patch: int, overlap: float) -> list[int]:
    """Start offsets of patches covering ``length``; the last one ends exactly at the end."""
    if patch >= length:
        return [0]
    step = max(1, int(patch * (1.0 - overlap)))
    starts = list(range(0, length - patch, step))
    return starts + [length - patch]


def gaussian_weights(patch: tuple[int, int, int]) -> np.ndarray:
    """Importance map favouring patch centres (sigma = patch / 8), never zero at the borders."""
    axes = []
    for n in patch:
        x = np.arange(n, dtype=np.float32) - (n - 1) / 2.0
        axes.append(np.exp(-0.5 * (x / max(n / 8.0, 1e-3)) ** 2))
    w = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    return np.maximum(w / w.max(), 1e-3).astype(np.float32)


def sliding_window(data: np.ndarray, patch: tuple[int, int, int] | None, overlap: float, predict: Predict, *,
                   gaussian: bool = True, progress: ProgressFn | None = None,
                   cancel: CancelToken | None = None) -> np.ndarray:
    """Run ``predict`` over ``data`` ``[k, j, i]`` in patches ``(k, j, i)``; blended scores ``[C, k, j, i]``.

    A volume smaller than the patch is zero-padded for the run and cropped after.
    """
    if patch is None or tuple(patch) == data.shape:
        if progress is not None:
            progress(Progress(0, 1, "inference"))
        out = predict(data[None, None])[0]
        if progress is not None:
            progress(Progress(1, 1, "inference"))
        return out
    original = data.shape
    shape = tuple(max(s, p) for s, p in zip(data.shape, patch))
    if shape != data.shape:
        padded = np.zeros(shape, np.float32)
        padded[: data.shape[0], : data.shape[1], : data.shape[2]] = data
        data = padded
    weights = gaussian_weights(patch) if gaussian else np.ones(patch, np.float32)
    grid = list(itertools.product(*(window_starts(s, p, overlap) for s, p in zip(shape, patch))))
    acc: np.ndarray | None = None
    norm = np.zeros(shape, np.float32)
    for n, (k, j, i) in enumerate(grid):
        if cancel is not None:
            cancel.check()
        box = (slice(k, k + patch[0]), slice(j, j + patch[1]), slice(i, i + patch[2]))
        scores = predict(np.ascontiguousarray(data[box])[None, None])[0]
        if acc is None:
            acc = np.zeros((scores.shape[0],) + shape, np.float32)
        acc[(slice(None),) + box] += scores * weights
        norm[box] += weights
        if progress is not None:
            progress(Progress(n + 1, len(grid), f"inference: window {n + 1} of {len(grid)}"))
    assert acc is not None  # the grid always holds at least one window
    acc /= norm
    return acc[:, : original[0], : original[1], : original[2]]

"""Plugins whose pipeline is more than resample -> infer -> argmax: an optional hooks module.

A manifest with ``hooks = "NAME"`` has ``NAME.py`` in its plugin folder.  It is imported only when the
plugin runs (never at discovery), from that file alone, and must define::

    def infer(volume: Volume, context: HookContext) -> tuple[np.ndarray, np.ndarray] | Measured

returning labels (uint8) and confidence (uint8, 0..255) as ``[k, j, i]`` arrays on the SOURCE grid,
or a :class:`Measured`: the labels and the findings the hook measured itself (e.g. on the coarser grid its
labels were expanded from, which is cheaper than counting regions again on the source grid).
The runner opens every model file of the manifest (``model`` and ``extra_models``) before calling it,
and builds the LabelMap, segments and (unless measured) findings from what it returns, as for a plain plugin.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np

from workstation.ai import grid
from workstation.ai.inference import OnnxModel
from workstation.ai.manifest import Manifest
from workstation.ai.registry import Plugin, resolve_model
from workstation.model.finding import Finding
from workstation.model.tasks import CancelToken, Progress, ProgressFn
from workstation.model.volume import Volume


class HooksError(RuntimeError):
    """The plugin's hooks module is missing, does not import, lacks ``infer``, or returned the wrong thing."""


class InputRefused(ValueError):
    """Raised by a hooks module that finds the image unusable (e.g. no brain in it); the message is for the user."""


@dataclass
class HookContext:
    """What a hooks module gets besides the volume."""

    manifest: Manifest
    models: Mapping[str, OnnxModel]  # model file name (as in the manifest) -> open session
    cancel: CancelToken
    report: ProgressFn
    #: seconds per stage; a hook fills "preprocess", "inference", "postprocess" (and may add its own)
    timings_s: dict[str, float] = field(default_factory=dict)

    def predict(self, name: str, x: np.ndarray) -> np.ndarray:
        """Run model file ``name`` on ``x`` ``[N, C, D, H, W]`` (cancellable)."""
        return self.models[name].predict(np.ascontiguousarray(x, dtype=np.float32), self.cancel)

    def stage(self, name: str) -> _Stage:
        """``with context.stage("inference"): ...`` adds the block's wall time to ``timings_s[name]``."""
        return _Stage(self.timings_s, name)


@dataclass(frozen=True, eq=False)
class Measured:
    """What ``infer`` may return instead of (labels, confidence): the labels on the source grid and the
    findings the hook measured itself."""

    labels: np.ndarray
    findings: tuple[Finding, ...]


class _Stage:
    def __init__(self, timings: dict[str, float], name: str) -> None:
        self.timings, self.name = timings, name

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc) -> None:
        self.timings[self.name] = self.timings.get(self.name, 0.0) + time.perf_counter() - self.start


def load_hooks(plugin: Plugin) -> ModuleType:
    """Import ``<folder>/<hooks>.py`` under a private module name; it must define ``infer``."""
    m = plugin.manifest
    path = plugin.folder / f"{m.hooks}.py"
    if not path.is_file():
        raise HooksError(f"plugin {m.id!r}: hooks module {path} does not exist")
    name = f"_workstation_plugin_hooks.{m.id.replace('-', '_').replace('.', '_')}.{m.hooks}"
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path):
        module = sys.modules[name]
    else:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise HooksError(f"plugin {m.id!r}: cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - a broken plugin gets a message, not a traceback
            raise HooksError(f"plugin {m.id!r}: importing {path} failed: {type(exc).__name__}: {exc}") from None
        sys.modules[name] = module
    if not callable(getattr(module, "infer", None)):
        raise HooksError(f"plugin {m.id!r}: {path} defines no infer(volume, context) function")
    return module


def open_models(plugin: Plugin, search_path: Sequence[Path], *, threads: int = 0,
                allow_accelerators: bool = True) -> dict[str, OnnxModel]:
    """Every model file of the manifest, opened (a missing or corrupt one raises before any work)."""
    m = plugin.manifest
    return {name: OnnxModel(resolve_model(plugin, search_path, name), m.input.tensor, m.output.tensor,
                            threads=threads, allow_accelerators=allow_accelerators)
            for name in (m.model, *m.extra_models)}


def run_hooks(plugin: Plugin, volume: Volume, models: Mapping[str, OnnxModel], cancel: CancelToken | None,
              progress: ProgressFn | None) -> tuple[np.ndarray, np.ndarray | tuple[Finding, ...], dict[str, float]]:
    """Labels (source grid) and either the confidence (source grid) or the findings the hook measured, and
    the stage timings, from the plugin's ``infer``."""
    infer: Callable = load_hooks(plugin).infer
    context = HookContext(plugin.manifest, models, cancel or CancelToken(), progress or _ignore)
    out = infer(volume, context)
    if isinstance(out, Measured):
        if not (isinstance(out.labels, np.ndarray) and all(isinstance(f, Finding) for f in out.findings)):
            raise HooksError(f"plugin {plugin.id!r}: infer() returned a Measured without a labels array "
                             "and Finding objects")
        labels, second = out.labels, tuple(out.findings)
        arrays = (("labels", labels),)
    elif isinstance(out, tuple) and len(out) == 2 and all(isinstance(a, np.ndarray) for a in out):
        labels, second = out
        arrays = (("labels", labels), ("confidence", second))
    else:
        raise HooksError(f"plugin {plugin.id!r}: infer() must return (labels, confidence) arrays or a Measured")
    for what, a in arrays:
        if a.shape != volume.shape:
            raise HooksError(f"plugin {plugin.id!r}: infer() returned {what} of shape {a.shape}, "
                             f"not the source grid {volume.shape}")
    if isinstance(second, np.ndarray):
        second = second.astype(np.uint8, copy=False)
    return labels.astype(np.uint8, copy=False), second, context.timings_s


def _ignore(_: Progress) -> None:
    pass


def run_with_hooks(plugin: Plugin, models: Mapping[str, OnnxModel], volume: Volume,
                   progress: ProgressFn | None = None, cancel: CancelToken | None = None):
    """:func:`workstation.ai.runner.run_plugin` for a plugin with hooks, with its models already open."""
    from workstation.ai.postprocess import region_findings
    from workstation.ai.runner import AiResult, _segments
    from workstation.model.labelmap import LabelMap

    m = plugin.manifest
    start = time.perf_counter()
    labels, confidence_or_findings, timings = run_hooks(plugin, volume, models, cancel, progress)
    mark = time.perf_counter()
    labelmap = LabelMap.on_grid_of(volume, labels, _segments(m))
    if isinstance(confidence_or_findings, tuple):  # measured by the hook
        findings = confidence_or_findings
    else:
        findings = tuple(grid.region_findings_in_box(region_findings, labels, confidence_or_findings, volume, m))
    timings["findings"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - start
    providers = next(iter(models.values())).providers
    return AiResult(labelmap, findings, m.id, m.version, providers, timings)


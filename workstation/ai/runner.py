"""Run a plugin on a Volume: pre-process, infer (onnxruntime), post-process, map back to the source grid.

The result is on the SOURCE grid (a :class:`LabelMap` or :class:`Heatmap` with the volume's shape and affine,
or findings in LPS mm) and every segment, map and finding is stamped with the plugin's id and version.
The manifest's output kind picks the post-processing: ``labelmap`` (argmax / threshold, one finding per
connected region), ``detections`` (boxes or points, thresholds and NMS), ``heatmap`` (a float map per label,
resampled linearly, a finding at its peak) or ``classification`` (per-class scores for the whole series).
Work is checked against a memory budget before anything large is allocated, reports progress, and can be
cancelled at any stage (an onnxruntime run in progress is terminated).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from workstation.ai import grid
from workstation.ai.inference import OnnxModel, sliding_window
from workstation.ai.manifest import Blending, Manifest, OutputKind
from workstation.ai.postprocess import (class_scores, classification_findings, detection_findings,
                                        heatmap_peak_finding, heatmap_probabilities, labels_from_scores,
                                        region_findings)
from workstation.ai.registry import Plugin, model_search_path, resolve_model
from workstation.model.finding import Finding
from workstation.model.heatmap import Heatmap
from workstation.model.labelmap import Algorithm, AlgorithmType, Code, LabelMap, Segment
from workstation.model.tasks import CancelToken, Progress, ProgressFn
from workstation.model.volume import Volume

DEFAULT_MEMORY_BUDGET = 8 << 30


class WrongInput(ValueError):
    """The volume is not what the plugin was made for (modality, colour images, ...)."""


class MemoryBudgetExceeded(MemoryError):
    """The run would need more memory than allowed; nothing was allocated."""


@dataclass(frozen=True)
class RunOptions:
    threads: int = 0  # onnxruntime intra-op threads; 0 = its default (all cores)
    allow_accelerators: bool = True
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET
    check_modality: bool = True
    search_path: tuple[Path, ...] | None = None  # None: WORKSTATION_MODEL_PATH + shared models

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RunOptions:
        env = os.environ if env is None else env
        threads = int(env.get("WORKSTATION_AI_THREADS", "0") or 0)
        cpu_only = env.get("WORKSTATION_AI_CPU_ONLY", "") == "1"
        return cls(threads=threads, allow_accelerators=not cpu_only)


@dataclass(frozen=True, eq=False)
class AiResult:
    labelmap: LabelMap | None  # None for detections, heatmaps and classification
    findings: tuple[Finding, ...]
    plugin_id: str
    plugin_version: str
    providers: tuple[str, ...]
    timings_s: dict[str, float] = field(default_factory=dict)
    kind: OutputKind = OutputKind.LABELMAP
    heatmaps: tuple[Heatmap, ...] = ()
    #: classification: (label, probability) per class, in manifest order
    class_scores: tuple[tuple[str, float], ...] = ()


def run_plugin(plugin: Plugin, volume: Volume, options: RunOptions = RunOptions(),
               progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> AiResult:
    """Run ``plugin`` on ``volume``; results on the volume's own grid."""
    m = plugin.manifest
    check_input(m, volume, options)
    search = model_search_path() if options.search_path is None else options.search_path
    if m.hooks:  # the plugin brings its own pipeline (imported only now): workstation.ai.hooks
        from workstation.ai.hooks import open_models, run_with_hooks

        models = open_models(plugin, search, threads=options.threads, allow_accelerators=options.allow_accelerators)
        return run_with_hooks(plugin, models, volume, progress, cancel)
    model = OnnxModel(resolve_model(plugin, search), m.input.tensor, m.output.tensor, threads=options.threads,
                      allow_accelerators=options.allow_accelerators)
    return run_model(model, m, volume, options, progress, cancel)


def check_input(m: Manifest, volume: Volume, options: RunOptions) -> None:
    if m.output.kind in (OutputKind.DETECTIONS, OutputKind.CLASSIFICATION) and m.input.patch is not None:
        raise WrongInput(f"plugin {m.id!r}: {m.output.kind.value} models see the whole grid at once; "
                         "remove input.patch from the manifest")
    if volume.voxels.ndim != 3:
        raise WrongInput(f"plugin {m.id!r} needs a greyscale volume; this series is colour")
    if options.check_modality and volume.info.modality not in m.input.modalities:
        raise WrongInput(f"plugin {m.id!r} is made for {'/'.join(m.input.modalities)} images; "
                         f"this series is {volume.info.modality or 'of unknown modality'}")
    needed = estimate_memory(m, volume)
    if needed > options.memory_budget_bytes:
        raise MemoryBudgetExceeded(f"plugin {m.id!r} would need about {needed / 2**30:.1f} GiB on this series; "
                                   f"the budget is {options.memory_budget_bytes / 2**30:.1f} GiB")


def estimate_memory(m: Manifest, volume: Volume) -> int:
    """Bytes of the largest arrays a run holds at once (model grid tensors + source-grid results)."""
    _, shape = grid.model_grid(volume, m.input)
    model_voxels = int(np.prod(shape))
    channels = max(2, len(m.labels) + 1)
    source_voxels = int(np.prod(volume.shape))
    if m.output.kind in (OutputKind.DETECTIONS, OutputKind.CLASSIFICATION):
        return model_voxels * 4 * 3  # input, the copy the model is handed, and its working memory
    if m.output.kind is OutputKind.HEATMAP:
        return model_voxels * 4 * (2 + 2 * channels) + source_voxels * 4 * (channels + 1)
    # input + scores + blending weights + labels/confidence on the model grid; labels, confidence,
    # a float copy for SimpleITK and component images on the source grid
    return model_voxels * 4 * (2 + channels) + source_voxels * (4 + 4 + 2)


def run_model(model: OnnxModel, m: Manifest, volume: Volume, options: RunOptions = RunOptions(),
              progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> AiResult:
    """The pipeline with an already opened model (benchmarks reuse one session)."""
    cancel = cancel or CancelToken()
    report = progress or (lambda p: None)
    t: dict[str, float] = {}
    start = time.perf_counter()
    report(Progress(0, 4, "pre-processing"))
    data, model_affine = grid.model_input(volume, m.input)
    t["preprocess"] = time.perf_counter() - start
    cancel.check()
    report(Progress(1, 4, "inference"))
    mark = time.perf_counter()
    if m.output.kind in (OutputKind.DETECTIONS, OutputKind.CLASSIFICATION):
        return _run_whole_grid(model, m, volume, data, model_affine, report, cancel, t, start)
    patch = None if m.input.patch is None else tuple(reversed(m.input.patch))
    scores = sliding_window(data, patch, m.input.overlap, lambda x: model.predict(x, cancel),
                            gaussian=m.input.blending is Blending.GAUSSIAN, cancel=cancel)
    del data
    t["inference"] = time.perf_counter() - mark
    cancel.check()
    report(Progress(2, 4, "post-processing"))
    mark = time.perf_counter()
    if m.output.kind is OutputKind.HEATMAP:
        return _heatmap_result(model, m, volume, scores, model_affine, report, cancel, t, start)
    labels, confidence = labels_from_scores(scores, m.output.activation, m.output.threshold)
    del scores
    t["postprocess"] = time.perf_counter() - mark
    cancel.check()
    report(Progress(3, 4, "mapping back to the source grid"))
    mark = time.perf_counter()
    # label and confidence travel together (one uint16) through one nearest-neighbour mapping onto the part
    # of the source grid that can receive a label; regions are counted there, on the source grid
    box = grid.nonzero_box(labels)
    on_source = np.zeros(volume.shape, np.uint8)
    findings: tuple[Finding, ...] = ()
    mapped = None
    if box is not None:
        inside = labels[box]
        # confidence only where there is a label (it is only read inside regions): the values are non-zero
        # exactly where a label is, so the part of the source grid they can reach is bounded tightly
        packed = (inside.astype(np.uint16) << 8) | (confidence[box] * (inside != 0))
        del inside
        mapped = grid.nearest_to_source(packed, grid.sub_volume(Volume(labels, model_affine), box).affine, volume)
        del packed
    if mapped is not None:
        packed_source, target = mapped
        label_bytes, confidence_bytes = _split_bytes(packed_source)
        on_source[target] = label_bytes
        # the part is tight around the labels already, and each label is looked at in its own box
        findings = tuple(region_findings(on_source[target], confidence_bytes, grid.sub_volume(volume, target), m))
    labelmap = LabelMap.on_grid_of(volume, on_source, _segments(m))
    t["map_back"] = time.perf_counter() - mark
    t["total"] = time.perf_counter() - start
    report(Progress(4, 4, "done"))
    return AiResult(labelmap, findings, m.id, m.version, model.providers, t)


def _run_whole_grid(model: OnnxModel, m: Manifest, volume: Volume, data: np.ndarray, model_affine: np.ndarray,
                    report: ProgressFn, cancel: CancelToken, t: dict[str, float], start: float) -> AiResult:
    """Detections and classification: one run on the whole model grid, then findings in LPS mm."""
    mark = time.perf_counter()
    raw = model.predict(np.ascontiguousarray(data[None, None]), cancel)
    t["inference"] = time.perf_counter() - mark
    cancel.check()
    report(Progress(2, 4, "post-processing"))
    mark = time.perf_counter()
    scores: tuple[tuple[str, float], ...] = ()
    if m.output.kind is OutputKind.DETECTIONS:
        findings = tuple(detection_findings(raw, model_affine, volume, m))
    else:
        scores = tuple(class_scores(raw, m))
        findings = tuple(classification_findings(list(scores), volume, m))
    t["postprocess"] = time.perf_counter() - mark
    t["map_back"] = 0.0  # corners are mapped with the findings
    t["total"] = time.perf_counter() - start
    report(Progress(4, 4, "done"))
    return AiResult(None, findings, m.id, m.version, model.providers, t, m.output.kind, class_scores=scores)


def _heatmap_result(model: OnnxModel, m: Manifest, volume: Volume, scores: np.ndarray, model_affine: np.ndarray,
                    report: ProgressFn, cancel: CancelToken, t: dict[str, float], start: float) -> AiResult:
    """Heatmaps: probabilities per label on the model grid, resampled (linear) onto the source grid."""
    mark = time.perf_counter()
    maps = heatmap_probabilities(scores, m)
    del scores
    t["postprocess"] = time.perf_counter() - mark
    cancel.check()
    report(Progress(3, 4, "mapping back to the source grid"))
    mark = time.perf_counter()
    heatmaps, findings = [], []
    for spec, values in maps:
        on_source = grid.resample(grid.to_sitk(values, model_affine), volume.affine, volume.shape, labels=False,
                                  pixel_type=sitk.sitkFloat32)
        np.clip(on_source, 0.0, 1.0, out=on_source)
        heatmaps.append(Heatmap.on_grid_of(volume, on_source, spec.name, spec.colour, m.id, m.version))
        peak = heatmap_peak_finding(on_source, spec, volume, m)
        if peak is not None:
            findings.append(peak)
        cancel.check()
    t["map_back"] = time.perf_counter() - mark
    t["total"] = time.perf_counter() - start
    report(Progress(4, 4, "done"))
    return AiResult(None, tuple(findings), m.id, m.version, model.providers, t, m.output.kind, tuple(heatmaps))


def _split_bytes(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The high and low bytes of uint16 ``packed`` as uint8 views (no copies, no arithmetic)."""
    both = packed.view(np.uint8).reshape(packed.shape + (2,))
    order = packed.dtype.byteorder
    high = 1 if order == "<" or (order == "=" and sys.byteorder == "little") else 0  # little-endian: low byte first
    return both[..., high], both[..., 1 - high]


def _segments(m: Manifest) -> tuple[Segment, ...]:
    algorithm = Algorithm(m.id, m.version, AlgorithmType.AUTOMATIC)
    return tuple(
        Segment(spec.value, spec.name, spec.colour, Code(spec.category.code, spec.category.scheme, spec.category.meaning),
                Code(spec.type.code, spec.type.scheme, spec.type.meaning), algorithm)
        for spec in m.labels
    )


def search_path_from(dirs: Sequence[str | Path]) -> tuple[Path, ...]:
    return tuple(Path(d) for d in dirs)

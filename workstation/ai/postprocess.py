"""Post-processing: scores -> labels and confidence, and connected regions -> findings."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from workstation.ai.grid import nonzero_box, workers
from workstation.ai.manifest import Activation, Manifest
from workstation.model.finding import Finding, FindingKind, Provenance
from workstation.model.volume import Volume

_SLAB = 16  # slices per step: bounds the temporary arrays of the activation
_LABEL_SLAB = 4  # slices per step of labels_from_scores: its temporary arrays stay in the cores' caches


def labels_from_scores(scores: np.ndarray, activation: Activation, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-voxel label (uint8) and confidence (uint8, 0..255) from scores ``[C, k, j, i]``.

    Softmax / none: channel ``c`` is label ``c`` (channel 0 background), the label is the argmax.
    Sigmoid: channel ``c`` is label ``c + 1``; the most probable channel above ``threshold`` wins.
    """
    k = scores.shape[1]
    labels = np.empty(scores.shape[1:], np.uint8)
    confidence = np.empty(scores.shape[1:], np.uint8)

    def slab(z: int) -> None:  # numpy lets go of the GIL: slabs run side by side on the cores
        s = scores[:, z:z + _LABEL_SLAB]
        best = labels[z:z + _LABEL_SLAB]
        top = _argmax_into(s, best)  # the winning channel's score, float32
        # the winner's probability, without normalising every channel: softmax -> 1 / sum(exp(s - top)),
        # sigmoid -> sigmoid(top) (monotonic: the highest score is the most probable channel)
        if activation is Activation.SOFTMAX:
            total = np.subtract(s[0], top, dtype=np.float32)
            np.exp(total, out=total)
            e = np.empty_like(total)
            for c in range(1, s.shape[0]):
                np.subtract(s[c], top, out=e, dtype=np.float32)
                np.exp(e, out=e)
                total += e
            p = np.reciprocal(total, out=total)
        elif activation is Activation.SIGMOID:
            p = np.negative(top, out=top)
            np.exp(p, out=p)
            p += np.float32(1.0)
            np.reciprocal(p, out=p)
            best[...] = np.where(p >= threshold, best + 1, 0)
        else:
            p = top
        p *= np.float32(255.0)
        np.rint(p, out=p)
        if activation is not Activation.SOFTMAX:  # a softmax probability is within 0..1 already
            np.clip(p, 0, 255, out=p)
        confidence[z:z + _LABEL_SLAB] = p

    with ThreadPoolExecutor(max_workers=workers()) as pool:
        list(pool.map(slab, range(0, k, _LABEL_SLAB)))
    return labels, confidence


def _argmax_into(s: np.ndarray, best: np.ndarray) -> np.ndarray:
    """``best[...] = s.argmax(axis=0)`` (the first channel on ties) and ``s.max(axis=0)`` as float32, channel by
    channel (numpy's argmax along the first axis of a slab walks it voxel by voxel: several times slower)."""
    top = s[0].copy()
    best[...] = 0
    greater = np.empty(top.shape, np.bool_)
    for c in range(1, s.shape[0]):
        np.greater(s[c], top, out=greater)
        np.copyto(best, np.uint8(c), where=greater)
        np.maximum(top, s[c], out=top)
    if np.isnan(top).any():  # NaN scores: argmax points at the first NaN, which the comparisons above miss
        best[...] = s.argmax(axis=0)
    return top.astype(np.float32, copy=False)


def region_findings(labels: np.ndarray, confidence: np.ndarray, volume: Volume, manifest: Manifest) -> list[Finding]:
    """One finding per connected region of each label (largest first, limited by the manifest).

    Regions come from SimpleITK (connected components and their shape statistics, largest first), each label
    looked at only inside the box around its own voxels (the same regions, numbered in the same order);
    a region's score is its mean confidence, summed exactly in integers over the region's bounding box only
    (the same value a LabelStatisticsImageFilter gives, without its whole-image histograms).
    """
    voxel_mm3 = float(abs(np.linalg.det(volume.affine[:3, :3])))
    min_voxels = max(1, math.ceil(manifest.output.min_volume_mm3 / voxel_mm3))
    provenance = Provenance(manifest.id, manifest.version, manifest.title)
    limit = manifest.output.max_findings_per_label
    findings: list[Finding] = []
    if limit == 0:
        return findings

    def of_label(spec) -> list[Finding]:
        mask = labels == spec.value
        box = nonzero_box(mask)
        if box is None:
            return []
        regions = sitk.ConnectedComponent(sitk.GetImageFromArray(mask[box].view(np.uint8)))
        del mask
        shape = sitk.LabelShapeStatisticsImageFilter()
        shape.ComputePerimeterOff()  # on by default and the costliest part; findings need no perimeter
        shape.Execute(regions)  # every region at once: cheaper than relabelling by size first
        sizes = {region: shape.GetNumberOfPixels(region) for region in shape.GetLabels()}
        largest = sorted((r for r, n in sizes.items() if n >= min_voxels), key=lambda r: (-sizes[r], r))[:limit]
        ids = sitk.GetArrayViewFromImage(regions)
        values = confidence[box]
        offset = (box[2].start, box[1].start, box[0].start)  # (i, j, k) of the box in ``labels``
        return [_finding(_Region.of(shape, region, offset),
                         _mean_in_region(values, ids, region, shape.GetBoundingBox(region)),
                         spec.name, spec.value, voxel_mm3, volume, provenance)
                for region in largest]

    # SimpleITK lets go of the GIL: the labels are looked at side by side (findings stay in label order)
    with ThreadPoolExecutor(max_workers=min(workers(), len(manifest.labels))) as pool:
        for found in pool.map(of_label, manifest.labels):
            findings.extend(found)
    return findings


@dataclass(frozen=True)
class _Region:
    """A region's voxel count, bounding box ``(i0, j0, k0, ni, nj, nk)`` and centroid ``(i, j, k)`` (index space)."""

    voxels: int
    bbox: tuple[int, int, int, int, int, int]
    centroid: tuple[float, float, float]

    @classmethod
    def of(cls, shape: sitk.LabelShapeStatisticsImageFilter, region: int, offset: tuple[int, int, int]) -> _Region:
        """The statistics of ``region`` of an image cut out of a larger one at ``offset`` (i, j, k), in the
        larger one's indices -- bit for bit what the statistics over the larger image give: ITK's centroid is
        the exact integer sum of the indices / the count, so the sum is recovered exactly (it is far below
        2**53) and moved by ``offset`` in integers before the one division."""
        n = int(shape.GetNumberOfPixels(region))
        i0, j0, k0, ni, nj, nk = shape.GetBoundingBox(region)
        ci, cj, ck = (float(round(c * n) + n * o) / n for c, o in zip(shape.GetCentroid(region), offset))
        return cls(n, (i0 + offset[0], j0 + offset[1], k0 + offset[2], ni, nj, nk), (ci, cj, ck))


def _mean_in_region(values: np.ndarray, ids: np.ndarray, region: int, bbox: tuple[int, ...]) -> float:
    """Mean of uint8 ``values`` where ``ids == region``, looking only inside the region's bounding box."""
    i0, j0, k0, ni, nj, nk = bbox
    box = (slice(k0, k0 + nk), slice(j0, j0 + nj), slice(i0, i0 + ni))
    inside = ids[box] == region
    count = int(np.count_nonzero(inside))
    picked = values[box] * inside  # the region's values, 0 elsewhere (uint8)
    # rows of at most a few thousand uint8 values sum exactly in uint32; the row sums then in int64
    total = int(np.add.reduce(np.add.reduce(picked.reshape(-1, picked.shape[-1]), axis=1, dtype=np.uint32),
                              dtype=np.int64))
    return total / count  # exact integer sum / count: correctly rounded, as ITK's double sum / count


def _finding(region: _Region, mean: float, name: str, value: int, voxel_mm3: float, volume: Volume,
             provenance: Provenance) -> Finding:
    # the images carry no geometry (index space): map indices through the volume's affine
    i0, j0, k0, ni, nj, nk = region.bbox
    corners = np.array([[i, j, k] for i in (i0, i0 + ni - 1) for j in (j0, j0 + nj - 1) for k in (k0, k0 + nk - 1)], float)
    lps = volume.index_to_lps(corners)
    centroid = volume.index_to_lps(np.asarray(region.centroid))
    return Finding(
        kind=FindingKind.REGION, label=name, score=round(mean / 255.0, 4),
        centroid_mm=tuple(float(v) for v in centroid), bbox_min_mm=tuple(float(v) for v in lps.min(axis=0)),
        bbox_max_mm=tuple(float(v) for v in lps.max(axis=0)), provenance=provenance,
        volume_mm3=float(region.voxels) * voxel_mm3, segment_number=value,
        series_instance_uid=volume.info.series_instance_uid,
    )


# -- detections, heatmaps, classification --------------------------------------------------------------------
#: Boxes of one label overlapping a higher-scoring kept box by more than this (intersection over union) go.
NMS_IOU = 0.5
BOX_COLUMNS = 8  # i0, j0, k0, i1, j1, k1, score, label value  (model-grid voxel centres, inclusive)
POINT_COLUMNS = 5  # i, j, k, score, label value


class OutputMismatch(ValueError):
    """The model's output does not have the layout the manifest's output kind promises."""


def _probabilities(x: np.ndarray, activation: Activation, axis: int, what: str) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if activation is Activation.SIGMOID:
        return 1.0 / (1.0 + np.exp(-x))
    if activation is Activation.SOFTMAX:
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)
    if x.size and (np.nanmin(x) < -1e-6 or np.nanmax(x) > 1 + 1e-6):
        raise OutputMismatch(f"{what}: activation \"none\" needs scores within 0..1, got {np.nanmin(x):.3g}.."
                             f"{np.nanmax(x):.3g} (set output.activation to \"sigmoid\" or \"softmax\")")
    return np.clip(x, 0.0, 1.0)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box ``a`` (6,) against boxes ``b`` (n, 6); corners are inclusive voxel centres."""
    lo = np.maximum(a[:3], b[:, :3])
    hi = np.minimum(a[3:], b[:, 3:])
    inter = np.prod(np.clip(hi - lo + 1.0, 0.0, None), axis=1)
    vol_a = np.prod(a[3:] - a[:3] + 1.0)
    vol_b = np.prod(b[:, 3:] - b[:, :3] + 1.0, axis=1)
    return inter / (vol_a + vol_b - inter)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU, limit: int | None = None) -> list[int]:
    """Greedy non-maximum suppression: indices of the kept boxes, highest score first."""
    order = list(np.argsort(-scores, kind="stable"))
    keep: list[int] = []
    while order and (limit is None or len(keep) < limit):
        best = order.pop(0)
        keep.append(int(best))
        if order:
            overlap = box_iou(boxes[best], boxes[order])
            order = [o for o, v in zip(order, overlap) if v <= iou]
    return keep


def detection_findings(raw: np.ndarray, model_affine: np.ndarray, volume: Volume, manifest: Manifest) -> list[Finding]:
    """Findings from a detection output, boxes ``[N, 8]`` or points ``[N, 5]`` (an optional batch of 1 first).

    Scores go through the manifest's activation and threshold; boxes of each label through NMS and the
    per-label limit.  Corners are model-grid indices, mapped through ``model_affine`` to LPS mm.
    """
    rows = np.asarray(raw, np.float64)
    if rows.ndim == 3 and rows.shape[0] == 1:
        rows = rows[0]
    if rows.ndim != 2 or rows.shape[1] not in (BOX_COLUMNS, POINT_COLUMNS):
        raise OutputMismatch(f"plugin {manifest.id!r}: detections must be [N, 8] boxes (i0 j0 k0 i1 j1 k1 score "
                             f"label) or [N, 5] points (i j k score label); the model gave {list(np.shape(raw))}")
    if manifest.output.activation is Activation.SOFTMAX:
        raise OutputMismatch(f"plugin {manifest.id!r}: detections take activation \"none\" or \"sigmoid\", not softmax")
    boxes = rows.shape[1] == BOX_COLUMNS
    geometry = rows[:, :6] if boxes else np.concatenate([rows[:, :3], rows[:, :3]], axis=1)
    if boxes and np.any(geometry[:, 3:] < geometry[:, :3]):
        raise OutputMismatch(f"plugin {manifest.id!r}: a detection box has its far corner before its near corner")
    scores = _probabilities(rows[:, -2], manifest.output.activation, 0, f"plugin {manifest.id!r}")
    values = np.rint(rows[:, -1]).astype(int)
    known = {spec.value: spec for spec in manifest.labels}
    unknown = sorted(set(values.tolist()) - set(known))
    if unknown:
        raise OutputMismatch(f"plugin {manifest.id!r}: the model gave detections of label values {unknown}, "
                             f"which the manifest does not describe (it has {sorted(known)})")
    provenance = Provenance(manifest.id, manifest.version, manifest.title)
    kind = FindingKind.BOX if boxes else FindingKind.POINT
    findings = []
    for value, spec in known.items():
        mine = np.flatnonzero((values == value) & (scores >= manifest.output.threshold))
        keep = nms(geometry[mine], scores[mine], iou=manifest.output.nms_iou,
                   limit=manifest.output.max_findings_per_label) if boxes else \
            list(np.argsort(-scores[mine], kind="stable")[:manifest.output.max_findings_per_label])
        for n in keep:
            lo, hi = _box_to_lps(geometry[mine[n]], model_affine)
            findings.append(Finding(
                kind=kind, label=spec.name, score=round(float(scores[mine[n]]), 4),
                centroid_mm=_point((lo + hi) / 2.0), bbox_min_mm=_point(lo), bbox_max_mm=_point(hi),
                provenance=provenance, segment_number=value, series_instance_uid=volume.info.series_instance_uid))
    return findings


def _point(v: np.ndarray) -> tuple[float, float, float]:
    return (float(v[0]), float(v[1]), float(v[2]))


def _box_to_lps(box: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The LPS-aligned box around the 8 corners of an index-space box (exact when the grid is LPS-aligned)."""
    corners = np.array([[i, j, k] for i in (box[0], box[3]) for j in (box[1], box[4]) for k in (box[2], box[5])])
    lps = corners @ affine[:3, :3].T + affine[:3, 3]
    return lps.min(axis=0).astype(float), lps.max(axis=0).astype(float)


def channel_labels(manifest: Manifest, channels: int) -> list[tuple[int, object]]:
    """(channel, label spec) pairs: one channel per label in manifest order, or a background channel 0 first."""
    n = len(manifest.labels)
    if channels == n:
        return list(enumerate(manifest.labels))
    if channels == n + 1:
        return [(c + 1, spec) for c, spec in enumerate(manifest.labels)]
    raise OutputMismatch(f"plugin {manifest.id!r}: the model gives {channels} channels; the manifest has {n} "
                         f"labels (expected {n}, or {n + 1} with a background channel first)")


def class_scores(raw: np.ndarray, manifest: Manifest) -> list[tuple[str, float]]:
    """Per-class probabilities for the whole series from logits ``[1, C]`` (or ``[C]``), in manifest order."""
    logits = np.asarray(raw, np.float64)
    if logits.ndim == 2 and logits.shape[0] == 1:
        logits = logits[0]
    if logits.ndim != 1:
        raise OutputMismatch(f"plugin {manifest.id!r}: classification needs [1, C] scores; "
                             f"the model gave {list(np.shape(raw))}")
    p = _probabilities(logits, manifest.output.activation, 0, f"plugin {manifest.id!r}")
    return [(spec.name, round(float(p[c]), 4)) for c, spec in channel_labels(manifest, len(p))]


def classification_findings(scores: list[tuple[str, float]], volume: Volume, manifest: Manifest) -> list[Finding]:
    """One whole-series finding per class scoring at least the manifest's threshold, best first."""
    k, j, i = volume.shape
    corners = volume.index_to_lps(np.array([[a, b, c] for a in (0, i - 1) for b in (0, j - 1) for c in (0, k - 1)], float))
    provenance = Provenance(manifest.id, manifest.version, manifest.title)
    values = {spec.name: spec.value for spec in manifest.labels}
    return [Finding(kind=FindingKind.CLASSIFICATION, label=name, score=score,
                    centroid_mm=tuple(float(v) for v in volume.center_lps()),
                    bbox_min_mm=tuple(float(v) for v in corners.min(axis=0)),
                    bbox_max_mm=tuple(float(v) for v in corners.max(axis=0)), provenance=provenance,
                    segment_number=values[name], series_instance_uid=volume.info.series_instance_uid)
            for name, score in sorted(scores, key=lambda s: -s[1]) if score >= manifest.output.threshold]


def heatmap_probabilities(scores: np.ndarray, manifest: Manifest) -> list[tuple[object, np.ndarray]]:
    """(label spec, float32 map 0..1 on the model grid) per label from dense scores ``[C, k, j, i]``."""
    pairs = channel_labels(manifest, scores.shape[0])
    out = []
    activation = manifest.output.activation
    for channel, spec in pairs:
        if activation is Activation.SOFTMAX:  # over channels, one slab at a time
            p = np.empty(scores.shape[1:], np.float32)
            for z in range(0, scores.shape[1], _SLAB):
                p[z:z + _SLAB] = _probabilities(scores[:, z:z + _SLAB], activation, 0, manifest.id)[channel]
        else:
            p = _probabilities(scores[channel], activation, 0, f"plugin {manifest.id!r}").astype(np.float32)
        out.append((spec, p))
    return out


def heatmap_peak_finding(values: np.ndarray, spec, volume: Volume, manifest: Manifest) -> Finding | None:
    """A POINT finding at the heatmap's maximum when it reaches the threshold (ties: the first voxel)."""
    flat = int(np.argmax(values))
    peak = float(values.flat[flat])
    if peak < manifest.output.threshold:
        return None
    k, j, i = np.unravel_index(flat, values.shape)
    at = tuple(float(v) for v in volume.index_to_lps(np.array([i, j, k], float)))
    return Finding(kind=FindingKind.POINT, label=spec.name, score=round(min(peak, 1.0), 4), centroid_mm=at,
                   bbox_min_mm=at, bbox_max_mm=at, provenance=Provenance(manifest.id, manifest.version, manifest.title),
                   segment_number=spec.value, series_instance_uid=volume.info.series_instance_uid)

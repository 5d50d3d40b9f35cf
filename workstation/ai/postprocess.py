"""Post-processing: scores -> labels and confidence, and connected regions -> findings."""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk

from workstation.ai.manifest import Activation, Manifest
from workstation.model.finding import Finding, FindingKind, Provenance
from workstation.model.volume import Volume

_SLAB = 16  # slices per step: bounds the temporary arrays of the activation


def labels_from_scores(scores: np.ndarray, activation: Activation, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-voxel label (uint8) and confidence (uint8, 0..255) from scores ``[C, k, j, i]``.

    Softmax / none: channel ``c`` is label ``c`` (channel 0 background), the label is the argmax.
    Sigmoid: channel ``c`` is label ``c + 1``; the most probable channel above ``threshold`` wins.
    """
    c, k = scores.shape[0], scores.shape[1]
    labels = np.zeros(scores.shape[1:], np.uint8)
    confidence = np.zeros(scores.shape[1:], np.uint8)
    for z in range(0, k, _SLAB):
        s = scores[:, z:z + _SLAB].astype(np.float32, copy=True)
        if activation is Activation.SOFTMAX:
            s -= s.max(axis=0, keepdims=True)
            np.exp(s, out=s)
            s /= s.sum(axis=0, keepdims=True)
        elif activation is Activation.SIGMOID:
            s = 1.0 / (1.0 + np.exp(-s))
        best = s.argmax(axis=0)
        p = np.take_along_axis(s, best[None], axis=0)[0]
        if activation is Activation.SIGMOID:
            best = np.where(p >= threshold, best + 1, 0)
        labels[z:z + _SLAB] = best
        confidence[z:z + _SLAB] = np.clip(np.rint(p * 255.0), 0, 255).astype(np.uint8)
    del c
    return labels, confidence


def region_findings(labels: np.ndarray, confidence: np.ndarray, volume: Volume, manifest: Manifest) -> list[Finding]:
    """One finding per connected region of each label (largest first, limited by the manifest).

    Regions come from SimpleITK (connected components, relabelled largest first, shape statistics);
    a region's score is its mean confidence, summed exactly in integers over the region's bounding
    box only (the same value a LabelStatisticsImageFilter gives, without its whole-image histograms).
    """
    voxel_mm3 = float(abs(np.linalg.det(volume.affine[:3, :3])))
    min_voxels = max(1, math.ceil(manifest.output.min_volume_mm3 / voxel_mm3))
    provenance = Provenance(manifest.id, manifest.version, manifest.title)
    limit = manifest.output.max_findings_per_label
    findings: list[Finding] = []
    if limit == 0:
        return findings
    for spec in manifest.labels:
        mask = sitk.GetImageFromArray((labels == spec.value).view(np.uint8))
        relabel = sitk.RelabelComponentImageFilter()
        relabel.SetMinimumObjectSize(min_voxels)
        relabel.SetSortByObjectSize(True)
        regions = relabel.Execute(sitk.ConnectedComponent(mask))
        del mask
        if relabel.GetNumberOfObjects() == 0:
            continue
        shape = sitk.LabelShapeStatisticsImageFilter()
        shape.Execute(regions)
        for region in sorted(shape.GetLabels())[:limit]:
            score = _mean_in_region(confidence, regions, region, shape.GetBoundingBox(region))
            findings.append(_finding(shape, score, region, spec.name, spec.value, voxel_mm3, volume, provenance))
        del regions
    return findings


def _mean_in_region(values: np.ndarray, regions: sitk.Image, region: int, bbox: tuple[int, ...]) -> float:
    """Mean of integer ``values`` where ``regions == region``, looking only inside the region's bounding box."""
    i0, j0, k0, ni, nj, nk = bbox
    box = (slice(k0, k0 + nk), slice(j0, j0 + nj), slice(i0, i0 + ni))
    inside_image = sitk.RegionOfInterest(regions, [ni, nj, nk], [i0, j0, k0]) == region  # uint8 0/1
    inside = sitk.GetArrayViewFromImage(inside_image).view(np.bool_)
    count = int(np.count_nonzero(inside))
    total = int(values[box][inside].sum(dtype=np.int64))
    return total / count  # exact integer sum / count: correctly rounded, as ITK's double sum / count


def _finding(shape, mean: float, region: int, name: str, value: int, voxel_mm3: float, volume: Volume,
             provenance: Provenance) -> Finding:
    # the images carry no geometry (index space): map indices through the volume's affine
    i0, j0, k0, ni, nj, nk = shape.GetBoundingBox(region)
    corners = np.array([[i, j, k] for i in (i0, i0 + ni - 1) for j in (j0, j0 + nj - 1) for k in (k0, k0 + nk - 1)], float)
    lps = volume.index_to_lps(corners)
    centroid = volume.index_to_lps(np.asarray(shape.GetCentroid(region)))
    return Finding(
        kind=FindingKind.REGION, label=name, score=round(mean / 255.0, 4),
        centroid_mm=tuple(float(v) for v in centroid), bbox_min_mm=tuple(float(v) for v in lps.min(axis=0)),
        bbox_max_mm=tuple(float(v) for v in lps.max(axis=0)), provenance=provenance,
        volume_mm3=float(shape.GetNumberOfPixels(region)) * voxel_mm3, segment_number=value,
        series_instance_uid=volume.info.series_instance_uid,
    )

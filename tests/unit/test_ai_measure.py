"""A region measured on a coarse grid of runs equals the same region counted on the expanded fine grid."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from workstation.ai import grid
from workstation.ai.manifest import load_manifest
from workstation.ai.measure import region_on_runs
from workstation.ai.postprocess import region_findings
from workstation.ai.registry import BUILTIN_PLUGINS
from workstation.model.volume import Volume, VolumeInfo

BASE = load_manifest(BUILTIN_PLUGINS / "brain-extraction" / "plugin.toml")
MANIFEST = replace(BASE, output=replace(BASE.output, min_volume_mm3=0.0, max_findings_per_label=1))
AFFINE = np.array([[0.7, 0.1, 0, -90], [0, 0.6, 0.2, 30], [0.05, 0, 1.5, 12], [0, 0, 0, 1]])


def _case(rng, perm, flips):
    """A blob on a coarse grid, runs per axis, and the same blob expanded and reoriented onto a source grid."""
    coarse = (9, 11, 13)
    mask = np.zeros(coarse, np.uint8)
    mask[2:7, 3:9, 4:11] = 1
    mask[4, 5:7, 6:8] = 0  # a cavity: part of no region, counted out
    mask[2:4, 3:5, 4:6] = rng.random((2, 2, 2)) > 0.3
    mask[2, 3, 4] = 1
    values = rng.integers(0, 256, coarse, dtype=np.uint8)
    lengths = [rng.integers(1, 4, n) for n in coarse]
    starts = [int(rng.integers(0, 5)) for _ in coarse]
    firsts = [s + np.concatenate(([0], np.cumsum(n)[:-1])) for s, n in zip(starts, lengths)]
    fine_shape = tuple(int(s + n.sum() + 3) for s, n in zip(starts, lengths))
    fine_mask = np.zeros(fine_shape, np.uint8)
    fine_values = np.zeros(fine_shape, np.uint8)
    place = tuple(slice(s, s + int(n.sum())) for s, n in zip(starts, lengths))
    fine_mask[place] = grid.repeat_runs(mask, lengths)
    fine_values[place] = grid.repeat_runs(values, lengths)
    # source array axis perm[n] holds model axis n, reversed where flips[n]
    inverse = np.argsort(perm)
    flip = tuple(slice(None, None, -1) if f else slice(None) for f in flips)
    source_mask = np.ascontiguousarray(fine_mask[flip].transpose(inverse))
    source_values = np.ascontiguousarray(fine_values[flip].transpose(inverse))
    to_ijk = np.zeros((4, 4))
    to_ijk[3, 3] = 1.0
    for n in range(3):
        c = 2 - perm[n]
        to_ijk[c, n] = -1.0 if flips[n] else 1.0
        to_ijk[c, 3] = fine_shape[n] - 1.0 if flips[n] else 0.0
    volume = Volume(np.zeros(source_mask.shape, np.int16), AFFINE, VolumeInfo(modality="MR", series_instance_uid="1.2.3"))
    return mask, values, list(zip(firsts, lengths)), to_ijk, volume, source_mask, source_values


@pytest.mark.parametrize("perm", list(itertools.permutations(range(3))))
def test_a_region_on_runs_equals_the_region_counted_on_the_expanded_grid(perm):
    rng = np.random.default_rng(sum(perm) * 7 + perm[0])
    flips = tuple(bool(v) for v in rng.integers(0, 2, 3))
    mask, values, runs, to_ijk, volume, source_mask, source_values = _case(rng, perm, flips)
    (want,) = region_findings(source_mask, source_values, volume, MANIFEST)
    got = region_on_runs(mask, values, runs, to_ijk, volume, MANIFEST, MANIFEST.labels[0])
    same = ("kind", "label", "score", "volume_mm3", "segment_number", "series_instance_uid", "provenance")
    assert [getattr(got, n) for n in same] == [getattr(want, n) for n in same]
    for a, b in ((got.centroid_mm, want.centroid_mm), (got.bbox_min_mm, want.bbox_min_mm),
                 (got.bbox_max_mm, want.bbox_max_mm)):
        assert np.allclose(a, b, atol=1e-9)
    assert isinstance(got.score, float)


def test_an_empty_or_too_small_region_gives_no_finding():
    rng = np.random.default_rng(5)
    mask, values, runs, to_ijk, volume, _, _ = _case(rng, (0, 1, 2), (False, False, False))
    label = MANIFEST.labels[0]
    assert region_on_runs(np.zeros_like(mask), values, runs, to_ijk, volume, MANIFEST, label) is None
    big = replace(MANIFEST, output=replace(MANIFEST.output, min_volume_mm3=1e9))
    assert region_on_runs(mask, values, runs, to_ijk, volume, big, label) is None
    none = replace(MANIFEST, output=replace(MANIFEST.output, max_findings_per_label=0))
    assert region_on_runs(mask, values, runs, to_ijk, volume, none, label) is None

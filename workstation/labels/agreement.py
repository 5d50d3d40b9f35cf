"""Agreement between annotators: match one structure across readers by overlap, then Dice and volumes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workstation.model.labelmap import LabelMap


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(a & b)) / total


@dataclass(frozen=True)
class Agreement:
    annotators: tuple[str, ...]
    segments: tuple[int, ...]  # the matched segment number in each annotator's label map
    volumes_mm3: tuple[float, ...]
    dice: tuple[tuple[float, ...], ...]  # symmetric matrix, 1 on the diagonal


def largest_common_structure(maps: dict[str, LabelMap]) -> Agreement | None:
    """The biggest segment of the first annotator that every other annotator also drew (by best overlap)."""
    names = list(maps)
    if not names:
        return None
    first = maps[names[0]]
    for number, _ in sorted(first.counts().items(), key=lambda kv: -kv[1]):
        ref = first.mask(number)
        chosen = [number]
        for name in names[1:]:
            best = _best_overlap(maps[name], ref)
            if best is None:
                break
            chosen.append(best)
        else:
            return agreement(maps, chosen)
    return None


def _best_overlap(labelmap: LabelMap, ref: np.ndarray) -> int | None:
    hits = np.bincount(labelmap.labels[ref].ravel())
    hits[0] = 0
    return int(hits.argmax()) if hits.any() else None


def agreement(maps: dict[str, LabelMap], numbers: list[int]) -> Agreement:
    names = list(maps)
    masks = [maps[n].mask(s) for n, s in zip(names, numbers)]
    matrix = tuple(tuple(1.0 if i == j else dice(masks[i], masks[j]) for j in range(len(masks)))
                   for i in range(len(masks)))
    volumes = tuple(maps[n].volume_mm3(s) for n, s in zip(names, numbers))
    return Agreement(tuple(names), tuple(numbers), volumes, matrix)

"""Which instances of a series to fetch first: the slices near the middle, then outwards."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class InstanceSpot:
    """An instance and where it lies (None when the header gives no geometry)."""

    sop_uid: str
    position: tuple[float, float, float] | None = None
    orientation: tuple[float, ...] | None = None  # 6 direction cosines
    instance_number: int | None = None


def _normal(orientation: Sequence[float]) -> tuple[float, float, float]:
    r, c = orientation[:3], orientation[3:6]
    return (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])


def spatial_order(spots: Sequence[InstanceSpot]) -> list[InstanceSpot]:
    """Sorted along the slice normal when every instance has a position, else by instance number."""
    with_geometry = [s for s in spots if s.position is not None]
    orientation = next((s.orientation for s in spots if s.orientation and len(s.orientation) >= 6), None)
    if spots and len(with_geometry) == len(spots) and orientation is not None:
        n = _normal(orientation)
        return sorted(spots, key=lambda s: (sum(p * q for p, q in zip(s.position, n)), s.sop_uid))
    return sorted(spots, key=lambda s: (s.instance_number is None, s.instance_number or 0, s.sop_uid))


def middle_out(items: Sequence) -> list:
    """The middle item first, then alternately one below and one above, outwards."""
    if not items:
        return []
    mid = (len(items) - 1) // 2
    out = [items[mid]]
    for step in range(1, len(items)):
        for idx in (mid - step, mid + step):
            if 0 <= idx < len(items):
                out.append(items[idx])
    return out

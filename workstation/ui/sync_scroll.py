"""Linked scrolling of two slice viewports: the current study beside a prior.

Two rules, picked per pair of volumes (:func:`sync_mode`):

* **patient position** when both volumes share a Frame of Reference UID and their view planes are parallel
  or nearly so (within 30 degrees: series of one study angled differently, each shown as acquired):
  the follower shows the slice nearest to the leader's plane position along the follower's slice normal
  (LPS mm), clamped to its first or last slice when the leader is beyond its extent;
* **relative position** otherwise (another scanner visit, another frame of reference): the follower shows
  the same fraction of its stack, counted in reading order.

Scrolling either viewport moves the other; a newly shown volume is aligned to its partner.  ``enabled``
is the user's link toggle.
"""

from __future__ import annotations

import enum

import numpy as np

from workstation.model.volume import Volume
from workstation.ui.qt_compat import emit

# |cos| between plane normals above which two planes are followed by position: 30 degrees. Each view shows
# its series as acquired, so two series of one study (an axial T2 and an AC-PC angled T1) differ by a few
# degrees; the nearest slice to the leader's point is still the same anatomy, a fraction of the stack is not.
_PARALLEL = float(np.cos(np.radians(30.0)))


class SyncMode(enum.Enum):
    POSITION = "patient position"
    RELATIVE = "relative position"


def sync_mode(a: Volume, b: Volume, normal_a: np.ndarray, normal_b: np.ndarray) -> SyncMode:
    """POSITION when both volumes carry the same frame of reference and the planes are (nearly) parallel."""
    fa, fb = a.info.frame_of_reference_uid.strip(), b.info.frame_of_reference_uid.strip()
    parallel = abs(float(np.dot(normal_a, normal_b))) >= _PARALLEL
    return SyncMode.POSITION if fa and fa == fb and parallel else SyncMode.RELATIVE


def normal_extent(volume: Volume, normal: np.ndarray) -> tuple[float, float]:
    """Min and max of the volume's voxel-centre positions along ``normal`` (LPS mm)."""
    n_k, n_j, n_i = volume.shape
    corners = np.array([[i, j, k] for i in (0, n_i - 1) for j in (0, n_j - 1) for k in (0, n_k - 1)], float)
    along = np.array([volume.index_to_lps(c) for c in corners]) @ np.asarray(normal, float)
    return float(along.min()), float(along.max())


def position_index(view, xyz: np.ndarray) -> int:
    """The slice index (the view's own order) nearest to the plane through ``xyz``, clamped to the stack."""
    lo, _ = normal_extent(view.volume, view.normal)
    k = int(np.rint((np.asarray(xyz, float) @ view.normal - lo) / view.slice_step_mm()))
    return min(max(k, 0), view.slice_count() - 1)


def relative_index(leader_index: int, leader_count: int, follower_count: int) -> int:
    """The index at the same fraction of the follower's stack (both in reading order)."""
    if leader_count <= 1 or follower_count <= 1:
        return 0
    return int(np.rint(leader_index / (leader_count - 1) * (follower_count - 1)))


class ScrollSync:
    """Keeps the slices of a pair of :class:`~workstation.ui.viewport.SliceViewport` in step."""

    def __init__(self) -> None:
        self.pair: tuple | None = None
        self.enabled = True
        self._moving = False
        self._connections: list[tuple] = []

    def link(self, a, b) -> None:
        """Link ``a`` (the leader when a volume arrives) and ``b``; replaces an earlier pair."""
        if self.pair == (a, b):
            return
        self.unlink()
        self.pair = (a, b)
        for vp, other in ((a, b), (b, a)):
            slot_scroll = lambda vp=vp, other=other: self.follow(vp, other)  # noqa: E731
            slot_volume = self._volume_arrived
            vp.slice_changed.connect(slot_scroll)
            vp.volume_changed.connect(slot_volume)
            self._connections += [(vp.slice_changed, slot_scroll), (vp.volume_changed, slot_volume)]
        self.follow(a, b)

    def unlink(self) -> None:
        for signal, slot in self._connections:
            signal.disconnect(slot)
        self._connections = []
        self.pair = None

    def set_enabled(self, on: bool) -> None:
        """The user's link toggle; turning it on aligns the pair's second viewport to the first."""
        self.enabled = bool(on)
        if self.enabled and self.pair is not None:
            self.follow(*self.pair)

    def mode(self) -> SyncMode | None:
        """How the linked pair is synchronised now; None when not linked or a volume is missing."""
        if self.pair is None or any(vp.volume is None for vp in self.pair):
            return None
        a, b = (vp.view for vp in self.pair)
        return sync_mode(a.volume, b.volume, a.normal, b.normal)

    def _volume_arrived(self) -> None:
        # the pair's first viewport leads: a prior arriving on the right takes the left's slice, and a
        # new current study on the left takes the prior along
        if self.pair is not None:
            self.follow(*self.pair)

    def follow(self, leader, follower) -> None:
        """Move ``follower`` to the slice matching ``leader``'s."""
        if self._moving or not self.enabled or leader.volume is None or follower.volume is None:
            return
        lv, fv = leader.view, follower.view
        mode = sync_mode(lv.volume, fv.volume, lv.normal, fv.normal)
        self._moving = True
        try:
            if mode is SyncMode.POSITION:
                step = position_index(fv, lv.position_mm) - fv.slice_index()
                if step == 0:
                    return
                fv.scroll(step)  # the view's own order: no reading-order flip to undo
                follower.refresh()
                emit(follower.slice_changed)  # what the viewport emits after its own moves
            else:
                target = relative_index(leader.image_index(), lv.slice_count(), fv.slice_count())
                if target == follower.image_index():
                    return
                follower.scroll_to(target)
        finally:
            self._moving = False

"""Annotation tools on the 2D views: mouse events on a SliceView -> label operations on an Annotation.

:class:`AnnotationSession` holds the tool settings (active segment, tool, brush size in mm, HU range) and
turns press / drag / release at display positions into edits of :mod:`workstation.model.label_ops`.  It
works in any view whose plane is an index plane of the volume's grid (the 2D viewports and each MPR
plane); an oblique plane gets a clear message.  After each edit ``on_changed`` receives the changed box, so
the owner redraws only the overlays showing this annotation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from workstation.labels.ops_sitk import remove_small_islands
from workstation.labels.schema import Tool
from workstation.model import label_ops as ops
from workstation.model.annotation import Annotation, Mark, MarkKind
from workstation.model.edits import LabelEdit
from workstation.model.volume import Volume
from workstation.render.labelmap_layer import LabelMapLayer
from workstation.render.overlays import WorldLines
from workstation.render.slice_view import SliceView

__all__ = ["AnnotationSession", "PlaneError", "PAINT_TOOLS", "view_plane"]

PAINT_TOOLS = (Tool.BRUSH, Tool.ERASER, Tool.HU_BRUSH)
MOUSE_TOOLS = (*PAINT_TOOLS, Tool.REGION_GROW, Tool.POLYGON, Tool.FREEHAND, Tool.BOX_2D, Tool.BOX_3D, Tool.POINT)
_CLOSE_PX = 6.0  # a polygon click this close to its first vertex closes it


class PlaneError(ValueError):
    """The view's plane is not a plane of the grid (oblique MPR): label tools cannot draw there."""


def view_plane(view: SliceView, volume: Volume) -> tuple[int, int]:
    """(axis, index) of the grid plane shown by ``view``: axis 0 = k, 1 = j, 2 = i."""
    n_idx = volume.direction.T @ view.normal  # the normal in the grid's (i, j, k) unit axes
    a = int(np.argmax(np.abs(n_idx)))
    if abs(abs(n_idx[a]) - 1.0) > 1e-3:
        raise PlaneError("annotation tools draw on the planes of the image grid only: reset the MPR rotation, "
                         "or turn View > Show series as acquired back on")
    axis = 2 - a
    index = int(np.rint(volume.lps_to_index(view.position_mm)[a]))
    return axis, index


def _kji(view: SliceView, volume: Volume, x: float, y: float) -> np.ndarray:
    i, j, k = volume.lps_to_index(view.display_to_lps(x, y))
    return np.array([k, j, i])


@dataclass
class _Drag:
    view: SliceView
    axis: int
    index: int
    start: np.ndarray  # (k, j, i), continuous
    last: np.ndarray
    edits: list = field(default_factory=list)
    points: list = field(default_factory=list)  # contour points (k, j, i)


class AnnotationSession:
    """The tools acting on one :class:`Annotation` of one volume."""

    def __init__(self, doc: Annotation, volume: Volume, on_changed: Callable[[object], None],
                 on_status: Callable[[str], None] = lambda text: None) -> None:
        if tuple(doc.labels.shape) != volume.shape:
            raise ValueError(f"the annotation's grid {doc.labels.shape} is not the volume's {volume.shape}")
        self.doc, self.volume = doc, volume
        self.on_changed, self.on_status = on_changed, on_status
        self.spacing = ops.spacing_kji(volume.affine)
        self.tool = Tool.BRUSH
        self.segment = doc.segments[0].number if doc.segments else 1
        self.radius_mm = 3.0
        self.sphere = False  # brush / region grow in 3D
        self.hu_range = (-1000.0, 400.0)
        self.smooth_mode = "open+close"
        self.min_island_mm3 = 10.0
        self._drag: _Drag | None = None
        self._polygon: _Drag | None = None
        self._previews: dict[int, WorldLines] = {}

    # -- mouse ------------------------------------------------------------------------------------------
    def press(self, view: SliceView, x: float, y: float) -> None:
        try:
            axis, index = view_plane(view, self.volume)
        except PlaneError as exc:
            self.on_status(str(exc))
            return
        p = _kji(view, self.volume, x, y)
        if self.tool is Tool.POLYGON:
            self._polygon_click(view, axis, index, p, (x, y))
            return
        self._drag = _Drag(view, axis, index, p, p, points=[p])
        if self.tool in PAINT_TOOLS:
            self._dab(self._drag, p)
        elif self.tool is Tool.REGION_GROW:
            self._region_grow(axis, p)
            self._drag = None
        elif self.tool is Tool.POINT:
            self._mark(MarkKind.POINT, p, p)
            self._drag = None

    def move(self, view: SliceView, x: float, y: float) -> None:
        d = self._drag
        if d is None or d.view is not view:
            return
        p = _kji(view, self.volume, x, y)
        p[d.axis] = d.index  # stay in the plane the drag began on
        if self.tool in PAINT_TOOLS:
            for c in ops.stroke_centres(d.last, p, self.radius_mm, self.spacing)[1:]:
                self._dab(d, np.asarray(c, float))
        elif self.tool is Tool.FREEHAND:
            d.points.append(p)
            self._preview(view, d.points)
        elif self.tool in (Tool.BOX_2D, Tool.BOX_3D):
            self._preview(view, _rectangle(d.start, p, d.axis))
        d.last = p

    def release(self, view: SliceView, x: float, y: float) -> None:
        d, self._drag = self._drag, None
        if d is None or d.view is not view:
            return
        if self.tool in PAINT_TOOLS:
            with self.doc.lock:
                edit = ops.merge_edits(self.doc.labels, d.edits, _stroke_name(self.tool, self.segment))
            self.doc.apply(edit)
            self.on_changed(None)  # already drawn dab by dab; tells the owner the history changed
            return
        self._clear_preview(view)
        p = _kji(view, self.volume, x, y)
        p[d.axis] = d.index
        if self.tool is Tool.FREEHAND:
            self._fill(d.axis, d.index, [*d.points, p])
        elif self.tool is Tool.BOX_2D:
            self._mark(MarkKind.BOX_2D, d.start, p)
        elif self.tool is Tool.BOX_3D:
            depth = self.radius_mm / self.spacing[d.axis]
            a, b = d.start.copy(), p.copy()
            a[d.axis], b[d.axis] = d.index - depth, d.index + depth
            self._mark(MarkKind.BOX_3D, a, b)

    @property
    def dragging(self) -> bool:
        return self._drag is not None

    # -- the tools ----------------------------------------------------------------------------------------
    def _dab(self, d: _Drag, centre: np.ndarray) -> None:
        erase = self.tool is Tool.ERASER
        hu = self.hu_range if self.tool is Tool.HU_BRUSH else None
        with self.doc.lock:
            edit = ops.brush(self.doc.labels, np.rint(centre).astype(int), self.radius_mm, self.spacing,
                             0 if erase else self.segment, axis=None if self.sphere else d.axis,
                             image=self.volume.voxels if hu else None, hu_range=hu,
                             only_on=self.segment if erase else 0)
        if edit is not None:
            d.edits.append(edit)
            self.on_changed(edit.box)

    def _region_grow(self, axis: int, p: np.ndarray) -> None:
        seed = tuple(int(v) for v in np.rint(p))
        if not all(0 <= s < n for s, n in zip(seed, self.doc.labels.shape)):
            self.on_status("Region grow: click inside the image")
            return
        with self.doc.lock:
            edit = ops.region_grow(self.doc.labels, self.volume.voxels, [seed], self.segment, self.spacing,
                                   intensity_range=self.hu_range, axis=None if self.sphere else axis)
        self._record(edit, "region grow: nothing to add (seed outside the HU range?)")

    def _fill(self, axis: int, index: int, points: list[np.ndarray]) -> None:
        others = [a for a in range(3) if a != axis]
        uv = [(float(q[others[0]]), float(q[others[1]])) for q in points]
        if len(uv) < 3:
            self.on_status("A contour needs at least three points")
            return
        with self.doc.lock:
            edit = ops.fill_polygon(self.doc.labels, axis, index, uv, self.segment, only_on=0)
        self._record(edit, "contour: nothing to fill")

    def _mark(self, kind: MarkKind, a: np.ndarray, b: np.ndarray) -> None:
        hi = np.asarray(self.doc.labels.shape) - 1
        p0 = tuple(int(v) for v in np.clip(np.rint(a), 0, hi))
        p1 = tuple(int(v) for v in np.clip(np.rint(b), 0, hi))
        self.doc.add_mark(Mark(kind, self.segment, p0, p1))  # type: ignore[arg-type]
        self.on_changed(None)
        self.on_status(f"{kind.value.replace('_', ' ')} added")

    def _record(self, edit: LabelEdit | None, nothing: str) -> None:
        self.doc.apply(edit)
        if edit is None:
            self.on_status(nothing)
        self.on_changed(None if edit is None else edit.box)

    def _polygon_click(self, view: SliceView, axis: int, index: int, p: np.ndarray, xy) -> None:
        poly = self._polygon
        if poly is None or poly.view is not view or (poly.axis, poly.index) != (axis, index):
            if poly is not None:
                self._clear_preview(poly.view)
            self._polygon = _Drag(view, axis, index, p, p, points=[p], edits=[xy])
            return
        first = poly.edits[0]
        if len(poly.points) >= 3 and np.hypot(xy[0] - first[0], xy[1] - first[1]) <= _CLOSE_PX:
            self.close_polygon()
            return
        p[axis] = index
        poly.points.append(p)
        self._preview(view, poly.points)

    def close_polygon(self) -> None:
        """Fill the polygon drawn so far (a click on its first vertex does this too)."""
        poly, self._polygon = self._polygon, None
        if poly is None:
            return
        self._clear_preview(poly.view)
        self._fill(poly.axis, poly.index, poly.points)

    # -- whole-segment operations (buttons) -----------------------------------------------------------------
    def interpolate(self, view: SliceView) -> None:
        """Fill the active segment between the planes drawn in ``view``'s orientation."""
        try:
            axis, _ = view_plane(view, self.volume)
            with self.doc.lock:
                edit = ops.interpolate_gaps(self.doc.labels, self.segment, axis, self.spacing)
        except ValueError as exc:
            self.on_status(f"Interpolate: {exc}")
            return
        self._record(edit, "Interpolate: draw the segment on two planes with a gap between them first")

    def smooth(self) -> None:
        with self.doc.lock:
            edit = ops.morphology(self.doc.labels, self.segment, max(self.radius_mm / 2.0, min(self.spacing)),
                                  self.spacing, mode=self.smooth_mode, axis=None if self.sphere else 0)
        self._record(edit, "Smooth: nothing changed")

    def remove_islands(self) -> None:
        with self.doc.lock:
            edit = remove_small_islands(self.doc.labels, self.segment, self.spacing,
                                        min_size_mm3=self.min_island_mm3, full_connectivity=True)
        self._record(edit, f"Remove islands: no piece under {self.min_island_mm3:g} mm\u00b3")

    def undo(self) -> None:
        edit = self.doc.undo()
        self.on_status("Nothing to undo" if edit is None else f"Undone: {edit.description}")
        self.on_changed(getattr(edit, "box", None))

    def redo(self) -> None:
        edit = self.doc.redo()
        self.on_status("Nothing to redo" if edit is None else f"Redone: {edit.description}")
        self.on_changed(getattr(edit, "box", None))

    # -- preview -------------------------------------------------------------------------------------------
    def _preview(self, view: SliceView, points: list[np.ndarray]) -> None:
        lines = self._previews.get(id(view))
        if lines is None:
            lines = self._previews[id(view)] = WorldLines(view.renderer, color=(1.0, 0.9, 0.2), width=1.5)
        ijk = np.array([[q[2], q[1], q[0]] for q in points], float)
        lines.set_polylines([self.volume.index_to_lps(ijk)] if len(ijk) > 1 else [])
        self.on_changed(None)

    def _clear_preview(self, view: SliceView) -> None:
        lines = self._previews.get(id(view))
        if lines is not None:
            lines.set_polylines([])

    def close(self) -> None:
        """Remove the preview lines from the views."""
        for lines in self._previews.values():
            lines.set_polylines([])


def _rectangle(a: np.ndarray, b: np.ndarray, axis: int) -> list[np.ndarray]:
    u, v = [x for x in range(3) if x != axis]
    corners = []
    for cu, cv in ((a[u], a[v]), (a[u], b[v]), (b[u], b[v]), (b[u], a[v]), (a[u], a[v])):
        c = a.copy()
        c[u], c[v] = cu, cv
        corners.append(c)
    return corners


def _stroke_name(tool: Tool, segment: int) -> str:
    return {Tool.ERASER: f"erase {segment}", Tool.HU_BRUSH: f"threshold brush {segment}"}.get(tool, f"brush {segment}")


class AnnotationOverlay:
    """The annotation's label map drawn on one SliceView, above the AI overlay (its own image layer)."""

    LAYER = 2

    def __init__(self, view: SliceView) -> None:
        self.view = view
        self.layer = LabelMapLayer(view.renderer, layer_number=self.LAYER)
        view.add_layer(self.layer.slice)
        self.layer.set_opacity(0.6)
        self.marks: WorldLines | None = None

    def show(self, doc: Annotation | None) -> bool:
        """Show ``doc`` when the view shows its volume's grid; returns whether it is shown."""
        vol = self.view.volume
        shown = doc is not None and vol is not None and doc.labelmap.is_on_grid_of(vol) and (
            not vol.info.series_instance_uid or vol.info.series_instance_uid == doc.series_uid)
        target = doc.labelmap if shown else None
        if self.layer.labelmap is not target:
            self.layer.set_labelmap(target)
        return shown

    def changed(self, box=None) -> None:
        """The labels changed (within ``box``, (k0, k1, j0, j1, i0, i1), when given)."""
        self.layer.modified(box)

    def shows_box(self, box) -> bool:
        """Whether the view's plane passes through ``box`` (k0, k1, j0, j1, i0, i1): only then is a redraw due."""
        vol = self.view.volume
        if vol is None or self.layer.labelmap is None:
            return False
        try:
            axis, index = view_plane(self.view, vol)
        except PlaneError:
            return True  # an oblique plane: assume it does
        return box[2 * axis] <= index < box[2 * axis + 1]

    def show_marks(self, doc: Annotation | None) -> None:
        """Draw the points (a small cross) and boxes (their outline) that cut the view's current plane."""
        if self.marks is None:
            self.marks = WorldLines(self.view.renderer, color=(0.3, 1.0, 0.3), width=1.5)
        vol = self.view.volume
        lines: list[np.ndarray] = []
        if doc is not None and vol is not None and self.layer.labelmap is not None:
            try:
                axis, index = view_plane(self.view, vol)
            except PlaneError:
                axis, index = -1, -1
            if axis >= 0:
                lines = [q for m in doc.marks if m.lo[axis] <= index <= m.hi[axis]
                         for q in _mark_lines(m, axis, index, vol)]
        self.marks.set_polylines(lines)


def _mark_lines(m: Mark, axis: int, index: int, volume: Volume) -> list[np.ndarray]:
    """LPS polylines of a mark on plane ``index`` of ``axis``: a box outline, or a cross 4 voxels wide."""
    lo, hi = np.asarray(m.lo, float), np.asarray(m.hi, float)
    if m.kind is MarkKind.POINT:
        u, v = [x for x in range(3) if x != axis]
        arms = []
        for a in (u, v):
            p, q = lo.copy(), lo.copy()
            p[a] -= 4
            q[a] += 4
            arms.append([p, q])
        pieces = arms
    else:
        lo, hi = lo - 0.5, hi + 0.5  # around the voxels, not through their centres
        pieces = [_rectangle(lo, hi, axis)]
    out = []
    for piece in pieces:
        kji = np.array(piece, float)
        kji[:, axis] = index
        out.append(volume.index_to_lps(kji[:, ::-1]))
    return out

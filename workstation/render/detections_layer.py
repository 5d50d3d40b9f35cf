"""AI detections on a :class:`~workstation.render.slice_view.SliceView`: boxes cut by the current plane, points.

A box is an axis-aligned box in LPS mm (a :class:`~workstation.model.finding.Finding`'s ``bbox_min_mm`` /
``bbox_max_mm``); on any plane, standard or oblique, the layer draws the polygon where the plane cuts it
(nothing when the plane misses it by more than half a slice).  A point is a small cross on the slices within
half a slice of it.  Each shape is labelled "<label> <score>", and the layer carries an "AI-generated:
<model> <version>" badge while it shows anything.  Geometry is recomputed on every render, so it follows
scrolling, rotation and zoom with no extra calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from workstation.model.finding import Finding, FindingKind
from workstation.render import _vtk as vtk
from workstation.render.badges import ai_badge, shown_text
from workstation.render.overlays import WorldLines

_EDGES = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]  # the 12 cube edges
POINT_MARK_MM = 4.0


@dataclass(frozen=True)
class Drawn:
    """One finding to draw and how: its colour (0..1 RGB) and the text beside it."""

    finding: Finding
    colour: tuple[float, float, float]
    text: str


def box_section(lo, hi, point, normal, tol: float) -> np.ndarray | None:
    """Polygon (n, 3) where the plane (``point``, ``normal``) cuts the box [lo, hi]; None if it misses.

    A plane within ``tol`` mm outside the box (or a flat box within ``tol``) still shows the nearest section,
    moved onto the plane, so a box spanning slices k0..k1 shows on each of them.
    """
    lo, hi, n = np.asarray(lo, float), np.asarray(hi, float), np.asarray(normal, float)
    corners = np.array([[(hi if c >> 2 & 1 else lo)[0], (hi if c >> 1 & 1 else lo)[1], (hi if c & 1 else lo)[2]]
                        for c in range(8)])
    along = corners @ n
    d = float(np.asarray(point, float) @ n)
    a_min, a_max = float(along.min()), float(along.max())
    if d < a_min - tol or d > a_max + tol:
        return None
    if a_max - a_min < 1e-9:  # flat box parallel to the plane: its face
        pts = corners
    else:
        cut = min(max(d, a_min + 1e-9), a_max - 1e-9)
        pts = []
        for a, b in _EDGES:
            da, db = along[a] - cut, along[b] - cut
            if (da < 0) != (db < 0):
                pts.append(corners[a] + (corners[b] - corners[a]) * (da / (da - db)))
        if len(pts) < 2:
            return None
        pts = np.array(pts)
    pts = pts + (d - pts @ n)[:, None] * n  # onto the plane
    return _ordered(pts, n)


def _ordered(pts: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Unique points in angular order around their centre (a convex polygon in the plane)."""
    uniq = [p for k, p in enumerate(pts) if all(np.linalg.norm(p - q) > 1e-6 for q in pts[:k])]
    pts = np.array(uniq)
    centre = pts.mean(axis=0)
    u = next((v for v in np.eye(3) if abs(v @ n) < 0.9), np.eye(3)[0])
    u = u - (u @ n) * n
    u /= np.linalg.norm(u)
    w = np.cross(n, u)
    angles = np.arctan2((pts - centre) @ w, (pts - centre) @ u)
    return pts[np.argsort(angles)]


class DetectionsLayer:
    """Boxes and points of findings on one slice view; call :meth:`set_items`, then render as usual."""

    def __init__(self, view) -> None:
        self.view = view
        self.renderer = view.renderer
        self.items: list[Drawn] = []
        self._centres = self._halves = np.zeros((0, 3))
        self._visible = True
        self.lines = WorldLines(self.renderer, width=2.0)
        self._texts: list[vtk.vtkTextActor] = []
        self.badge = ai_badge(self.renderer, row=1)
        #: findings drawn at the last render (the ones the current plane cuts)
        self.shown: list[Finding] = []
        self._observer = self.renderer.AddObserver(vtk.vtkCommand.StartEvent, lambda *_: self.update())

    def set_items(self, items: Sequence[Drawn], badge: str = "") -> None:
        self.items = [d for d in items if d.finding.kind in (FindingKind.BOX, FindingKind.POINT)]
        lo = np.array([d.finding.bbox_min_mm for d in self.items], float).reshape(-1, 3)
        hi = np.array([d.finding.bbox_max_mm for d in self.items], float).reshape(-1, 3)
        self._centres, self._halves = (lo + hi) / 2.0, (hi - lo) / 2.0  # to skip boxes the plane misses at once
        self.badge.SetInput(badge)
        self.update()

    def set_visible(self, on: bool) -> None:
        self._visible = bool(on)
        self.update()

    @property
    def visible(self) -> bool:
        return self._visible and bool(self.items)

    @property
    def badge_text(self) -> str:
        return shown_text(self.badge)

    def update(self) -> None:
        """Recompute what the current plane shows (called before every render)."""
        view = self.view
        lines, colours, labels = [], [], []
        self.shown = []
        if self._visible and view.volume is not None:
            point, normal = view.position_mm, view.normal
            tol = view.slice_step_mm() / 2.0 + 1e-6
            right, up = view.screen_axes()
            reach = self._halves @ np.abs(normal) + tol
            near = np.abs((self._centres - point) @ normal) <= reach
            for d in (d for d, on in zip(self.items, near) if on):
                f = d.finding
                if f.kind is FindingKind.BOX:
                    poly = box_section(f.bbox_min_mm, f.bbox_max_mm, point, normal, tol)
                    if poly is None:
                        continue
                    lines.append(np.vstack([poly, poly[:1]]) if len(poly) > 2 else poly)
                    anchor = poly[np.argmax(poly @ up - 1e-3 * (poly @ right))]
                else:
                    c = np.asarray(f.centroid_mm, float)
                    if abs((c - point) @ normal) > tol:
                        continue
                    c = c - ((c - point) @ normal) * normal
                    s = POINT_MARK_MM
                    lines += [np.array([c - s * right, c + s * right]), np.array([c - s * up, c + s * up])]
                    colours.append(d.colour)
                    anchor = c + s * up + s * right
                colours.append(d.colour)
                labels.append((d.text, anchor, d.colour))
                self.shown.append(f)
        self.lines.set_polylines(lines, colours if lines else None)
        self._set_texts(labels)
        self.badge.SetVisibility(bool(self.shown) and bool(self.badge.GetInput()))

    def _set_texts(self, labels: list[tuple[str, np.ndarray, tuple[float, float, float]]]) -> None:
        while len(self._texts) < len(labels):
            actor = vtk.vtkTextActor()
            actor.GetTextProperty().SetFontSize(13)
            actor.GetTextProperty().SetBold(True)
            actor.GetTextProperty().SetShadow(True)
            actor.GetTextProperty().SetVerticalJustificationToBottom()
            actor.GetPositionCoordinate().SetCoordinateSystemToWorld()
            self.renderer.AddViewProp(actor)
            self._texts.append(actor)
        for n, actor in enumerate(self._texts):
            if n < len(labels):
                text, anchor, colour = labels[n]
                actor.SetInput(text)
                actor.GetPositionCoordinate().SetValue(*(float(v) for v in anchor))
                actor.GetTextProperty().SetColor(*colour)
                actor.VisibilityOn()
            else:
                actor.VisibilityOff()

    def remove(self) -> None:
        self.renderer.RemoveObserver(self._observer)
        self.lines.remove(self.renderer)
        for actor in [*self._texts, self.badge]:
            self.renderer.RemoveViewProp(actor)

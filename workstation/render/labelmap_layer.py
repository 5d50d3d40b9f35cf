"""A label-map overlay on a :class:`~workstation.render.slice_view.SliceView`.

The labels are a second ``vtkImageSlice`` with its own ``vtkImageResliceMapper`` (nearest neighbour) on
the label map's grid, placed by the same prop matrix as the base image.  Both slices sit in one
``vtkImageStack`` (the view puts them there), so the labels are drawn over the image at the same plane
without depth fighting, and they follow the camera -- plane, oblique, zoom, pan -- with no extra code.

Colours come from the segments (label 0 is transparent).  An AI-generated layer carries a badge text
("AI-generated: <model> <version>") shown while the layer is visible: the IHE AI Results profile asks a
display to mark every AI result as such.

In outline mode only the boundary of each label in the displayed plane is drawn, so the anatomy under a
label stays visible: the layer keeps, per grid axis, a copy of the labels with every voxel whose four
in-plane neighbours carry the same label cleared (:func:`boundary_labels`), and shows the copy for the grid
axis nearest the camera's view direction (checked before every render, so it follows plane changes).
"""

from __future__ import annotations

import numpy as np

from workstation.model.labelmap import LabelMap
from workstation.render import _vtk as vtk
from workstation.render._layer import SliceOverlay, grid_image
from workstation.render.bridge import vtk_to_numpy_image

DEFAULT_OPACITY = 0.5


def ai_badge_text(labelmap: LabelMap) -> str:
    """"AI-generated: <model> <version>" for every AI model behind the segments; "" for hand-drawn maps."""
    models = []
    for s in labelmap.segments:
        a = s.algorithm
        if a is not None and a.family.value == "123110":  # DCM "Artificial Intelligence"
            name = f"{a.name} {a.version}".strip()
            if name not in models:
                models.append(name)
    return "AI-generated: " + ", ".join(models) if models else ""


def label_lookup_table(labelmap: LabelMap) -> vtk.vtkLookupTable:
    """One entry per label value 0..max: segment colours, opaque; 0 and undescribed values transparent."""
    top = max([1] + [s.number for s in labelmap.segments])
    lut = vtk.vtkLookupTable()
    lut.SetNumberOfTableValues(top + 1)
    lut.SetTableRange(0.0, float(top))
    for value in range(top + 1):
        lut.SetTableValue(value, 0.0, 0.0, 0.0, 0.0)
    for s in labelmap.segments:
        r, g, b = (c / 255.0 for c in s.colour)
        lut.SetTableValue(s.number, r, g, b, 1.0)
    lut.Build()
    return lut


def boundary_labels(labels: np.ndarray, axis: int) -> np.ndarray:
    """``labels`` on the boundary of each label within the planes normal to array ``axis``, 0 inside.

    A labelled voxel is on the boundary when one of its four neighbours in the plane has another value
    (background or another label) or lies outside the grid.  ``axis`` counts array axes: 0 is k (the slice
    axis of an axial series), 1 is j, 2 is i.
    """
    if labels.ndim != 3 or axis not in (0, 1, 2):
        raise ValueError(f"boundary_labels wants a 3D array and an axis 0..2, got {labels.ndim}D and {axis!r}")
    edge = np.zeros(labels.shape, bool)
    for ax in (a for a in range(3) if a != axis):
        lower, upper, first, last = ([slice(None)] * 3 for _ in range(4))
        lower[ax], upper[ax], first[ax], last[ax] = slice(0, -1), slice(1, None), 0, -1
        differs = labels[tuple(lower)] != labels[tuple(upper)]
        edge[tuple(lower)] |= differs
        edge[tuple(upper)] |= differs
        edge[tuple(first)] = True
        edge[tuple(last)] = True
    return np.where(edge, labels, 0).astype(labels.dtype, copy=False)


def update_boundary(boundary: np.ndarray, labels: np.ndarray, axis: int, box) -> None:
    """Bring ``boundary`` (:func:`boundary_labels` of ``labels`` before an edit) up to date after an edit
    whose changed voxels all lie in ``box`` (k0, k1, j0, j1, i0, i1).

    In the planes along ``axis`` a voxel's boundary state depends on its four neighbours, so the voxels up
    to one beyond the box may change; they are recomputed from a block one more voxel wide, whose own
    cut edges (which :func:`boundary_labels` takes for the grid's) are never written back."""
    shape = labels.shape
    write, block = [], []
    for ax in range(3):
        lo, hi = int(box[2 * ax]), int(box[2 * ax + 1])
        grow = 0 if ax == axis else 1
        w0, w1 = max(lo - grow, 0), min(hi + grow, shape[ax])
        b0, b1 = max(w0 - grow, 0), min(w1 + grow, shape[ax])
        write.append((w0, w1))
        block.append((b0, b1))
    if any(w0 >= w1 for w0, w1 in write):
        return
    part = boundary_labels(labels[tuple(slice(b0, b1) for b0, b1 in block)], axis)
    inner = tuple(slice(w0 - b0, w1 - b0) for (w0, w1), (b0, _) in zip(write, block))
    boundary[tuple(slice(w0, w1) for w0, w1 in write)] = part[inner]


def nearest_grid_axis(affine: np.ndarray, direction) -> int:
    """The array axis (0 = k, 1 = j, 2 = i) whose grid direction is closest to ``direction`` (LPS)."""
    axes = np.asarray(affine, float)[:3, :3]
    axes = axes / np.linalg.norm(axes, axis=0)
    best_ijk = int(np.argmax(np.abs(np.asarray(direction, float) @ axes)))
    return 2 - best_ijk


class LabelMapLayer(SliceOverlay):
    """The label slice and its badge.  The owner adds :attr:`slice` to the view's image stack."""

    def __init__(self, renderer: vtk.vtkRenderer, layer_number: int = 1) -> None:
        super().__init__(renderer, layer_number, opacity=DEFAULT_OPACITY, badge_row=0, linear=False)
        self.labelmap: LabelMap | None = None
        self._image: vtk.vtkImageData | None = None
        self._outline = False
        self._outlines: dict[int, vtk.vtkImageData] = {}  # array axis -> boundary copy, made when first shown
        self._shown_image: vtk.vtkImageData | None = None
        self._observer = renderer.AddObserver(vtk.vtkCommand.StartEvent, lambda *_: self._pick_image())

    # -- content -----------------------------------------------------------------------------------------
    def set_labelmap(self, labelmap: LabelMap | None) -> None:
        """Show ``labelmap`` (None removes it).  A new map rebuilds the image, colours and badge."""
        self.labelmap = labelmap
        self._outlines.clear()
        self._shown_image = None
        if labelmap is None:
            self.mapper.RemoveAllInputs()
            self._image = None
        else:
            self._image, matrix = grid_image(labelmap.labels, labelmap.affine)
            self._pick_image()
            self.slice.SetUserMatrix(matrix)
            self.property.SetLookupTable(label_lookup_table(labelmap))
            self.badge.SetInput(ai_badge_text(labelmap))
        self._apply_visibility()

    def modified(self, box: tuple[int, int, int, int, int, int] | None = None) -> None:
        """The label voxels were edited in place: redraw them.  ``box`` (k0, k1, j0, j1, i0, i1), when given,
        holds every changed voxel: the outlines shown so far are brought up to date there only (a brush dab
        costs its own size, not the volume's), else they are rebuilt."""
        if self._image is not None:
            self._image.Modified()
        if not self._outlines:
            return
        if box is None or self.labelmap is None:  # the boundaries moved anywhere: rebuild the shown one
            self._outlines.clear()
            self._shown_image = None
            self._pick_image()
            return
        for axis, image in self._outlines.items():
            update_boundary(vtk_to_numpy_image(image), self.labelmap.labels, axis, box)
            image.Modified()

    # -- fill or outline ---------------------------------------------------------------------------------
    @property
    def outline(self) -> bool:
        """True: only each label's boundary in the displayed plane is drawn; False: labels are filled."""
        return self._outline

    def set_outline(self, on: bool) -> None:
        self._outline = bool(on)
        self._pick_image()

    def _plane_axis(self) -> int:
        cam = self.renderer.GetActiveCamera()
        return nearest_grid_axis(self.labelmap.affine, cam.GetDirectionOfProjection())

    def _pick_image(self) -> None:
        """Give the mapper the filled labels or the outline copy for the current plane (before each render)."""
        if self._image is None or self.labelmap is None:
            return
        image = self._image
        if self._outline:
            axis = self._plane_axis()
            image = self._outlines.get(axis)
            if image is None:
                image = self._outlines[axis] = grid_image(boundary_labels(self.labelmap.labels, axis),
                                                          self.labelmap.affine)[0]
        if image is not self._shown_image:
            self.mapper.SetInputData(image)
            self._shown_image = image

    # -- display -----------------------------------------------------------------------------------------
    def _has_content(self) -> bool:
        return self.labelmap is not None

    def remove(self) -> None:
        self.renderer.RemoveObserver(self._observer)
        super().remove()

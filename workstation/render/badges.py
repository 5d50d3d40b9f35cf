"""The "AI-generated: model version" mark that every AI overlay carries (IHE AI Results asks a display to show it).

One place decides where it goes: right-aligned under the top-right corner text (modality, series, number:
at most three lines), one row per AI layer, in display pixels so that it neither covers the corner texts nor
the top orientation letter however small the viewport (the MPR panes) is.
"""

from __future__ import annotations

from workstation.render import _vtk as vtk

BADGE_COLOR = (1.0, 0.65, 0.0)  # orange: stands out on greyscale and on the usual label colours
FONT_SIZE = 13
TOP_PX = 58  # below the three lines of the top-right corner text
ROW_PX = 17
RIGHT_PX = 6


def ai_badge(renderer: vtk.vtkRenderer, row: int = 0) -> vtk.vtkTextActor:
    """A hidden badge text actor in ``renderer``, at badge row ``row`` (0 = the label map's)."""
    badge = vtk.vtkTextActor()
    tp = badge.GetTextProperty()
    tp.SetFontSize(FONT_SIZE)
    tp.SetBold(True)
    tp.SetShadow(True)
    tp.SetColor(*BADGE_COLOR)
    tp.SetJustificationToRight()
    tp.SetVerticalJustificationToTop()
    corner = vtk.vtkCoordinate()
    corner.SetCoordinateSystemToNormalizedViewport()
    corner.SetValue(1.0, 1.0)
    position = badge.GetPositionCoordinate()
    position.SetReferenceCoordinate(corner)
    position.SetCoordinateSystemToDisplay()  # an offset in pixels from the viewport's top-right corner
    position.SetValue(-RIGHT_PX, -(TOP_PX + ROW_PX * row))
    badge.VisibilityOff()
    renderer.AddViewProp(badge)
    return badge


def shown_text(badge: vtk.vtkTextActor) -> str:
    """The badge's text as the user sees it now: "" while it is hidden."""
    return (badge.GetInput() or "") if badge.GetVisibility() else ""

"""Corner overlay texts of a slice viewport (PACS layout): who, when, what, where, how displayed."""

from __future__ import annotations

import numpy as np

from workstation.render.slice_view import SliceView

UPPER_LEFT, UPPER_RIGHT, LOWER_LEFT, LOWER_RIGHT = 2, 3, 0, 1


def format_date(yyyymmdd: str) -> str:
    d = yyyymmdd.strip()
    return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else d


def patient_name(raw: str) -> str:
    """DICOM person name 'Family^Given' shown as 'FAMILY, Given'."""
    parts = [p for p in raw.split("^") if p]
    if len(parts) >= 2:
        return f"{parts[0].upper()}, {' '.join(parts[1:])}"
    return raw


def zoom_factor(view: SliceView) -> float:
    """Screen pixels per image pixel (1.0 = native resolution)."""
    vol = view.volume
    if vol is None:
        return 1.0
    return float(min(vol.spacing[:2]) / max(view.mm_per_pixel(), 1e-9))


def corner_texts(view: SliceView, image_index: int, cursor: str = "") -> dict[int, str]:
    """Corner texts; ``image_index`` is the 0-based image number in reading order."""
    vol = view.volume
    if vol is None:
        return {}
    info = vol.info
    along = float(view.position_mm @ view.normal)
    series = info.series_description or ""
    number = f"Se {info.series_number}" if info.series_number is not None else ""
    w = view.window
    return {
        UPPER_LEFT: "\n".join(x for x in (patient_name(info.patient_name), info.patient_id,
                                           format_date(info.study_date)) if x),
        UPPER_RIGHT: "\n".join(x for x in (info.modality, series, number) if x),
        LOWER_LEFT: "\n".join(x for x in (f"Im {image_index + 1}/{view.slice_count()}",
                                           f"Pos {along:.1f} mm",
                                           f"W {w.width:.0f}  L {w.center:.0f}   Zoom {zoom_factor(view):.2f}",
                                           cursor) if x),
        LOWER_RIGHT: "",  # the scale bar lives there
    }


def cursor_text(view: SliceView, x: float, y: float) -> str:
    """'HU -812  (L 12.3, P -40.1, H 100.0)' under a display position; '' outside the image."""
    vol = view.volume
    if vol is None:
        return ""
    value = view.value_at_display(x, y)
    if value is None:
        return ""
    p = np.asarray(view.display_to_lps(x, y))
    units = vol.info.units or "value"
    return f"{units} {value:.0f}  (x {p[0]:.1f}, y {p[1]:.1f}, z {p[2]:.1f} mm LPS)"

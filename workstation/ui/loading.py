"""Task functions that fetch and decode series (run by :class:`~workstation.ui.tasks.TaskRunner`).

They run on worker threads and touch no widget; partial results go out through the callbacks given.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from workstation.archive.client import ArchiveClient, CancelToken, Progress
from workstation.dicom.series import SeriesPlan, examine, load_volume
from workstation.model.volume import Photometric, Volume


class NothingToShow(ValueError):
    """The series holds no displayable image."""


def pick_plan(plans: list[SeriesPlan]) -> SeriesPlan:
    """The stack a viewer shows by default: the one with the most slices."""
    if not plans:
        raise NothingToShow("this series has no displayable images")
    return max(plans, key=lambda p: p.num_slices)


def series_loader(archive: ArchiveClient, series_uid: str,
                  on_partial: Callable[[Volume], None] | None = None):
    """A task function: fetch -> examine -> load, handing the partial volume to ``on_partial``."""

    def run(progress: Callable[[Progress], None], cancel: CancelToken) -> Volume:
        progress(Progress(0, 0, "fetching series"))
        paths = archive.fetch_series(series_uid, progress, cancel)
        plans, _skipped = examine(paths, progress, cancel)
        plan = pick_plan(plans)
        total = plan.num_slices

        def on_slice(done: int, n: int) -> None:
            progress(Progress(done, n or total, f"decoding {done}/{n or total}"))

        return load_volume(plan, on_slice=on_slice, cancel=cancel, into=on_partial)

    return run


def windowed_uint8(image: np.ndarray, center: float, width: float, invert: bool = False) -> np.ndarray:
    """Apply a linear window to a 2D array and return uint8 grey levels."""
    lo = center - width / 2.0
    out = np.clip((image.astype(np.float32) - lo) / max(width, 1e-3), 0.0, 1.0)
    if invert:
        out = 1.0 - out
    return (out * 255.0 + 0.5).astype(np.uint8)


def downscale(image: np.ndarray, max_side: int) -> np.ndarray:
    """Box-average ``image`` (2D) by an integer factor so its longer side is at most ``max_side``."""
    f = int(np.ceil(max(image.shape) / float(max_side)))
    if f <= 1:
        return image
    h, w = (image.shape[0] // f) * f, (image.shape[1] // f) * f
    return image[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3))


def thumbnail_loader(archive: ArchiveClient, series_uid: str, size: int = 96):
    """A task function returning an (h, w) uint8 thumbnail: middle slice, its own window, downscaled."""

    def run(progress: Callable[[Progress], None], cancel: CancelToken) -> np.ndarray:
        paths = archive.fetch_series(series_uid, None, cancel)
        plans, _ = examine(paths, None, cancel)
        plan = pick_plan(plans)
        middle = plan.files[len(plan.files) // 2]
        one, _ = examine([middle], None, cancel)
        vol = load_volume(pick_plan(one), cancel=cancel)
        k = vol.shape[0] // 2
        w = vol.auto_window()
        img = downscale(vol.voxels[k].astype(np.float32), size)
        return windowed_uint8(img, w.center, w.width, vol.info.photometric is Photometric.MONOCHROME1)

    return run

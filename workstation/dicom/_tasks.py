"""The long-work vocabulary (progress, cancel, skipped files) used by ``examine`` and ``load_volume``."""

from workstation.model.tasks import Cancelled, CancelToken, Progress, ProgressFn, Skipped

__all__ = ["Cancelled", "CancelToken", "Progress", "ProgressFn", "Skipped"]

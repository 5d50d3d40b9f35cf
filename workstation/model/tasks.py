"""The vocabulary of long work shared by every room: progress, cancel, and files that were skipped."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Skipped:
    """A file that was not imported or loaded, and why (in words for the user)."""

    path: str
    reason: str


@dataclass
class Progress:
    """Progress callback payload: done out of total (total 0 = unknown), plus a short text.

    ``bytes_done`` counts payload bytes received or sent so far (0 when the work is not a transfer).
    """

    done: int
    total: int
    text: str = ""
    bytes_done: int = 0


ProgressFn = Callable[[Progress], None]


class Cancelled(Exception):
    """Raised inside long work when the user pressed cancel."""


@dataclass
class CancelToken:
    """Shared flag a worker polls; the GUI thread sets it."""

    cancelled: bool = field(default=False)

    def cancel(self) -> None:
        self.cancelled = True

    def check(self) -> None:
        if self.cancelled:
            raise Cancelled()

"""Asking an archive whether a cached series is still current, quickly, and not again and again while it
does not answer.

Opening a series that is complete in the cache asks the archive how many instances it now holds (a SEG
revision may have been added to the series).  When the archive cannot be reached, the cached copy is shown
as it is; but a host that does not answer (a laptop off the hospital network, a VPN gone) would hold every
open for the whole wait.  So a check waits :data:`CHECK_TIMEOUT_S` at most, connecting and reading, and after
one that got no answer the next ones are skipped for :data:`QUIET_S` seconds: reading from the cache stays
immediate, and the archive is asked again a minute later.
"""

from __future__ import annotations

import threading
import time

CHECK_TIMEOUT_S = 3.0
QUIET_S = 60.0


class FreshnessChecks:
    """When the checks of one archive client may ask again."""

    def __init__(self) -> None:
        self._quiet_until = 0.0
        self._lock = threading.Lock()

    def skip(self) -> bool:
        """True while a recent check got no answer (the caller serves the cache without asking)."""
        with self._lock:
            return time.monotonic() < self._quiet_until

    def unanswered(self) -> None:
        with self._lock:
            self._quiet_until = time.monotonic() + QUIET_S

    def answered(self) -> None:
        with self._lock:
            self._quiet_until = 0.0

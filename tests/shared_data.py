"""Locate the real imaging data in ``../shared/data`` (next to the repository), read in place.

Tests call :func:`shared_case`; when the folder is absent the test skips with a reason, unless the
environment sets ``WORKSTATION_REQUIRE_SHARED_DATA=1`` (CI), in which case the test fails instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_case(name: str) -> Path:
    """Path of ``../shared/data/<name>``; skip (or fail under CI) when it is missing."""
    path = SHARED_DATA / name
    if not path.exists():
        reason = f"shared test data {path} is missing"
        if os.environ.get("WORKSTATION_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(reason + " (WORKSTATION_REQUIRE_SHARED_DATA=1)")
        pytest.skip(reason)
    return path

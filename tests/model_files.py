"""Locate real models in ``../shared/models`` with the same rule as shared data: skip, or fail under CI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_MODELS = Path(__file__).resolve().parents[1].parent / "shared" / "models"


def shared_model(model_id: str, name: str = "model.onnx") -> Path:
    path = SHARED_MODELS / model_id / name
    if not path.is_file():
        reason = f"shared model {path} is missing"
        if os.environ.get("WORKSTATION_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(reason + " (WORKSTATION_REQUIRE_SHARED_DATA=1)")
        pytest.skip(reason)
    return path

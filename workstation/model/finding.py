"""A finding: one result of an AI model (or a person) that a radiologist accepts or rejects.

Geometry is in DICOM patient coordinates (LPS, mm) so that it holds on any grid and in any view.
Findings are immutable; a decision makes a new Finding (``accept`` / ``reject`` / ``edit``), so an undo
stack can keep the old one.  An edit (new label, new box) is a decision too: EDITED, with who and when.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

Point = tuple[float, float, float]


class FindingKind(enum.Enum):
    REGION = "region"  # a connected region of a label map
    BOX = "box"  # a detection box
    POINT = "point"  # a detection point
    CLASSIFICATION = "classification"  # a whole-image label


class Status(enum.Enum):
    PENDING = "PENDING"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    EDITED = "EDITED"  # changed by the radiologist (label or box): accepted in its edited form


@dataclass(frozen=True)
class Provenance:
    """Who made the finding: a model id and version (or a person, with ``model_id`` the user name)."""

    model_id: str
    model_version: str
    model_title: str = ""


@dataclass(frozen=True)
class Decision:
    """A radiologist's decision on a finding."""

    status: Status
    by: str
    at: datetime


@dataclass(frozen=True)
class Finding:
    """One result with its geometry (LPS mm), score and provenance, and its review status."""

    kind: FindingKind
    label: str
    score: float
    centroid_mm: Point
    bbox_min_mm: Point
    bbox_max_mm: Point
    provenance: Provenance
    volume_mm3: float = 0.0
    segment_number: int | None = None  # the label value in the label map it came from, if any
    series_instance_uid: str = ""
    decision: Decision | None = None
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"finding score must be within 0..1, got {self.score}")
        if any(lo > hi for lo, hi in zip(self.bbox_min_mm, self.bbox_max_mm)):
            raise ValueError(f"bounding box corners are swapped: {self.bbox_min_mm} > {self.bbox_max_mm}")

    @property
    def status(self) -> Status:
        return Status.PENDING if self.decision is None else self.decision.status

    @property
    def size_mm(self) -> Point:
        lo, hi = self.bbox_min_mm, self.bbox_max_mm
        return (hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2])

    def accept(self, by: str, at: datetime | None = None) -> Finding:
        return self._decide(Status.ACCEPTED, by, at)

    def reject(self, by: str, at: datetime | None = None) -> Finding:
        return self._decide(Status.REJECTED, by, at)

    def edit(self, by: str, *, label: str | None = None, bbox_mm: tuple[Point, Point] | None = None,
             at: datetime | None = None) -> Finding:
        """The finding with a new label and/or box (LPS mm corners, any order), decided EDITED by ``by``.

        A new box moves the centroid to its centre; the uid stays, so the SR keeps tracking the same finding.
        """
        if label is not None and not label.strip():
            raise ValueError("an edited finding needs a non-empty label")
        changes: dict = {}
        if label is not None:
            changes["label"] = label.strip()
        if bbox_mm is not None:
            a, b = (tuple(float(v) for v in p) for p in bbox_mm)
            if len(a) != 3 or len(b) != 3:
                raise ValueError(f"a box needs two 3D corners, got {bbox_mm}")
            lo = tuple(min(x, y) for x, y in zip(a, b))
            hi = tuple(max(x, y) for x, y in zip(a, b))
            changes.update(bbox_min_mm=lo, bbox_max_mm=hi, centroid_mm=tuple((x + y) / 2.0 for x, y in zip(lo, hi)))
        if not changes:
            raise ValueError("an edit must change the label or the box")
        return replace(self, **changes)._decide(Status.EDITED, by, at)

    @property
    def is_ai(self) -> bool:
        """Made by a model (a versioned provenance), not drawn by a person."""
        return bool(self.provenance.model_version)

    def reopen(self) -> Finding:
        return replace(self, decision=None)

    def _decide(self, status: Status, by: str, at: datetime | None) -> Finding:
        if not by:
            raise ValueError("a decision needs the name of who made it")
        return replace(self, decision=Decision(status, by, at or datetime.now(timezone.utc)))

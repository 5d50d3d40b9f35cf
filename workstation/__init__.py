"""Open radiology reading and annotation workstation."""

__version__ = "0.1.0"

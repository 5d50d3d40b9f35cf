"""Open radiology reading and annotation workstation."""

from workstation._runtime import configure

__version__ = "0.1.0"

configure()  # steady numeric work: small pages, one BLAS thread (see workstation/_runtime.py)

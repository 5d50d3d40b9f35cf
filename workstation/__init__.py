"""Open radiology reading and annotation workstation."""

from workstation._pages import keep_small_pages

__version__ = "0.1.0"

keep_small_pages()  # steady large-array work on Linux (see workstation/_pages.py)

"""Work-arounds for bugs in the Qt binding, found by probing at import time rather than by version.

PySide6 6.12.0 on CPython 3.11: every Python-side ``SignalInstance.emit()`` returns ``True`` without
taking a reference, so each emit drops one reference to ``True``; after a few thousand emits the
interpreter aborts at exit with "bool_dealloc: deallocating True or False".  :func:`emit` emits and, when
the probe found the leak, gives the reference back.  Everything in ``workstation.ui`` emits through it.
"""

from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QObject, Signal


class _Probe(QObject):
    ping = Signal()


def _emit_leaks_a_reference() -> bool:
    if sys.version_info >= (3, 12):
        return False  # True is immortal there: nothing to fix even if the binding miscounts
    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(8):
        probe.ping.emit()
    lost = before - sys.getrefcount(True)
    if lost > 0:
        for _ in range(lost):  # repay the probe's own damage
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(True))
    return lost >= 8


_LEAKS = _emit_leaks_a_reference()


def emit(signal, *args) -> None:
    """``signal.emit(*args)``, minus the binding's reference-count bug.

    A worker that finishes after its window closed finds the signal's QObject deleted: nobody is left
    to tell, so that is not an error.
    """
    try:
        result = signal.emit(*args)
    except RuntimeError as exc:
        if "deleted" in str(exc):
            return
        raise
    if _LEAKS and isinstance(result, bool):
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(result))


def emitter(signal):
    """A plain callable that emits ``signal`` (for callbacks handed to non-Qt code)."""
    return lambda *args: emit(signal, *args)

"""Autosaved annotation work found again (after a crash, or left unsaved) is offered in the Annotate panel
(Restore / Discard) and never written over before it is decided: "Start annotating" begins nothing while
it is offered, opening a stored set for editing waits for it, and an autosave that cannot be read is
renamed out of the way.  A saved revision takes its autosave away (it is no longer unsaved work).
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from workstation.labels.autosave import AutosaveError, Snapshot, restore
from workstation.model.annotation import Annotation
from workstation.model.volume import Volume


class AutosaveRecovery:
    """The Restore / Discard offer of the Annotate panel, for the annotation controller ``ctl``."""

    def __init__(self, ctl) -> None:
        self.ctl = ctl
        self.pending: Snapshot | None = None  # autosaved work found for a series, not yet restored
        self._start_after_discard = False  # the offer came from "Start annotating": a discard starts afresh
        ctl.panel.restore_button.clicked.connect(self.restore)
        ctl.panel.discard_button.clicked.connect(self.discard)

    def before_start(self, study_uid: str, series_uid: str, annotator: str) -> tuple[bool, str]:
        """Before a fresh annotation of this series begins: (True, "") when autosaved work of the annotator
        is there (offered, and nothing may begin: edited beside the offer, a fresh annotation would autosave
        over it); else (False, what to say once it began: an unreadable autosave set aside, or nothing)."""
        try:
            found = self.ctl.store.load(study_uid, series_uid, annotator)
        except AutosaveError as exc:
            return False, self._set_aside(exc, study_uid, series_uid, annotator)
        if found is None:
            return False, ""
        self._offer(found)
        self._start_after_discard = True
        self.ctl.show()
        self.ctl.status("Unsaved work of yours on this series was found: restore it, or discard it to start afresh")
        return True, ""

    def unsaved_work_of(self, doc: Annotation) -> bool:
        """Whether this annotator has unsaved work on ``doc``'s series (said, and offered when autosaved)."""
        ctl = self.ctl
        key = (doc.study_uid, doc.series_uid, doc.annotator)
        if ctl.doc is not None and ctl.autosaver is not None and _key(ctl.doc) == key:
            if ctl.autosaver.dirty or ctl.store.path_for(*key).is_file():
                ctl.status("You have unsaved work on this series: save it as a revision first, then open the "
                           "set for editing")
                return True
            return False
        try:
            found = ctl.store.load(*key)
        except AutosaveError as exc:
            ctl.status(self._set_aside(exc, *key))
            return ctl.store.path_for(*key).is_file()  # (refused only when it could not be set aside)
        if found is None:
            return False
        self._offer(found)
        ctl.show()
        ctl.status("Unsaved work of yours on this series was found: restore it (and save it), or discard it, "
                   "before opening a set for editing")
        return True

    def on_volume(self, volume: Volume, annotator: str) -> None:
        """A view shows ``volume``: offer the annotator's autosaved work on its series, if any."""
        info = volume.info
        store = self.ctl.store
        if not store.path_for(info.study_instance_uid, info.series_instance_uid, annotator).is_file():
            return
        try:
            snap = store.load(info.study_instance_uid, info.series_instance_uid, annotator)
        except AutosaveError as exc:
            self.ctl.status(str(exc))
            return
        if snap is not None and snap.shape == volume.shape:
            self._offer(snap)
            self.ctl.show()

    def revision_saved(self, doc: Annotation, revision: int) -> None:
        """``doc`` was saved as a DICOM revision as it was at ``revision``: its autosave is not offered as
        unsaved work any more (unless it changed since)."""
        if doc is self.ctl.doc and self.ctl.autosaver is not None:
            self.ctl.autosaver.forget_saved(revision)

    def restore(self) -> None:
        """Take up the autosaved work offered, on a view showing its series."""
        ctl, snap = self.ctl, self.pending
        if snap is None:
            ctl.panel.restore_bar.hide()
            return
        volume = self._volume_of(snap.series_uid)
        if volume is None:
            ctl.status("Open the series of the autosaved work to restore it")
            return
        self.pending, self._start_after_discard = None, False
        ctl.panel.restore_bar.hide()
        doc = restore(snap)
        if tuple(doc.labels.shape) != volume.shape:
            ctl.status("The autosaved work is on another grid than this series: not restored (its file is kept)")
            return
        ctl.begin_restored(doc, volume)
        ctl.status(f"Restored autosaved work ({int(np.count_nonzero(doc.labels))} labelled voxels)")

    def discard(self) -> None:
        """Delete the autosaved work offered; after "Start annotating", a fresh annotation then begins."""
        ctl, snap, start = self.ctl, self.pending, self._start_after_discard
        self.pending, self._start_after_discard = None, False
        ctl.panel.restore_bar.hide()
        if snap is None:
            return
        if ctl.doc is not None and _key(ctl.doc) == (snap.study_uid, snap.series_uid, snap.annotator):
            return  # (the file is the open annotation's own autosave now)
        ctl.store.discard(snap.study_uid, snap.series_uid, snap.annotator)
        if start:
            ctl.start()

    def _volume_of(self, series_uid: str) -> Volume | None:
        """The volume of the series in the active view, else in any view."""
        active = self.ctl.window.viewer.active_slice_viewport()
        views = ([active] if active is not None else []) + list(self.ctl.slice_viewports())
        for vp in views:
            vol = vp.volume
            if vol is not None and (vol.info.series_instance_uid or "unknown") == series_uid:
                return vol
        return None

    def _offer(self, snap: Snapshot) -> None:
        self.pending = snap
        self._start_after_discard = False
        when = dt.datetime.fromtimestamp(snap.saved_at).strftime("%Y-%m-%d %H:%M:%S")
        self.ctl.panel.restore_text.setText(f"Unsaved annotation of this series by {snap.annotator} from {when} "
                                            "was found.")
        self.ctl.panel.restore_bar.show()

    def _set_aside(self, exc: AutosaveError, study_uid: str, series_uid: str, annotator: str) -> str:
        """Rename an autosave that cannot be read out of the way; what to tell the user."""
        kept = self.ctl.store.set_aside(study_uid, series_uid, annotator)
        return f"{exc}; it is kept as {kept}" if kept is not None else str(exc)


def _key(doc: Annotation) -> tuple[str, str, str]:
    return doc.study_uid, doc.series_uid, doc.annotator

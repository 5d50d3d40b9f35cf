"""Annotation sets in the Annotate dock: list the study's sets, open one for editing or read-only, and save
the annotation as the next revision of the annotator's own set, queued for the archive through the
application's sync service.

:class:`AnnotationSetsBox` is the widget (list, layer choice, buttons); :class:`AnnotationSetsFlow` runs
listing, loading and saving on the task runner and hands the results to the annotation controller.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QGroupBox, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton,
                               QSpinBox, QVBoxLayout, QWidget)

from workstation.archive.switch import archive_name_of
from workstation.labels.annotation_sets import AnnotationSet, LoadedSet
from workstation.labels.schema import LabelSchema, SchemaSegment, Tool

__all__ = ["AnnotationSetsBox", "AnnotationSetsFlow", "ListedSet"]

EDIT_TOOLS = tuple(t for t in Tool if t is not Tool.FROM_AI)  # what a segment of an opened set may use


@dataclass(frozen=True)
class ListedSet:
    annotation_set: AnnotationSet
    review: str  # "approved", "rejected", "unreviewed", "no findings", "unreadable"

    @property
    def kinds(self) -> str:
        s = self.annotation_set
        return " + ".join(k for k, revs in (("SEG", s.seg), ("SR", s.sr)) if revs)

    def title(self) -> str:
        s = self.annotation_set
        return f"{s.name} \u2014 {s.annotator} \u2014 {self.kinds}, revision {s.revision} \u2014 {self.review}"


class AnnotationSetsBox(QGroupBox):
    """The study's annotation sets with "Open for editing" and "Open read-only"."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Annotation sets of this study", parent)
        self.list = QListWidget()
        self.list.setMaximumHeight(110)
        self.refresh_button = QPushButton("Refresh")
        self.edit_button = QPushButton("Open for editing")
        self.view_button = QPushButton("Open read-only")
        self.layer = QSpinBox()
        self.layer.setRange(1, 1)
        self.layer.setPrefix("layer ")
        self.layer.setToolTip("A SEG whose segments overlap opens as separate layers: pick the one to open")
        self.info = QLabel()
        self.info.setWordWrap(True)
        col = QVBoxLayout(self)
        col.addWidget(self.list)
        row = QHBoxLayout()
        for w in (self.refresh_button, self.layer, self.edit_button, self.view_button):
            row.addWidget(w)
        col.addLayout(row)
        col.addWidget(self.info)
        self.list.currentRowChanged.connect(lambda _row: self._on_row())
        self._enable()

    def show_sets(self, listed: list[ListedSet]) -> None:
        self.list.clear()
        for entry in listed:
            item = QListWidgetItem(entry.title())
            item.setData(Qt.ItemDataRole.UserRole, entry)
            self.list.addItem(item)
        if listed:
            self.list.setCurrentRow(0)
        self._enable()

    def current(self) -> ListedSet | None:
        item = self.list.currentItem()
        return None if item is None else item.data(Qt.ItemDataRole.UserRole)

    def _on_row(self) -> None:
        self.layer.setRange(1, 1)  # another set: its layers are known once it is opened
        self._enable()

    def _enable(self) -> None:
        chosen = self.current() is not None
        self.edit_button.setEnabled(chosen)
        self.view_button.setEnabled(chosen)


class AnnotationSetsFlow:
    """Listing, opening and saving annotation sets for an :class:`AnnotationController`."""

    def __init__(self, controller, box: AnnotationSetsBox) -> None:
        self.ctl = controller
        self.box = box
        self.listed: list[ListedSet] = []
        self.opened: LoadedSet | None = None  # the set last opened for editing (its measurements are kept)
        self.listed_study = ""  # the study the list shows
        box.refresh_button.clicked.connect(self.refresh)
        box.edit_button.clicked.connect(lambda: self.open_current(editable=True))
        box.view_button.clicked.connect(lambda: self.open_current(editable=False))

    @property
    def window(self):
        return self.ctl.window

    def _owner(self, series_uid: str) -> tuple[str, object]:
        """(archive name, client) of the archive a series came from (the local one for a local series)."""
        archive = self.window.archive
        name = archive_name_of(archive, series_uid)
        client_for = getattr(archive, "client", None)
        return name, (client_for(name) if callable(client_for) else archive)

    # -- listing ------------------------------------------------------------------------------------------
    def refresh_if_new_study(self):
        """List the sets when the active view shows another study than the list (the dock was shown)."""
        vp = self.window.viewer.active_slice_viewport()
        volume = None if vp is None else vp.volume
        if volume is not None and volume.info.study_instance_uid != self.listed_study:
            return self.refresh()
        return None

    def refresh(self):
        vp = self.window.viewer.active_slice_viewport()
        volume = None if vp is None else vp.volume
        if volume is None:
            self.ctl.status("Annotation sets: open a series first")
            return None
        study = self.listed_study = volume.info.study_instance_uid
        _, client = self._owner(volume.info.series_instance_uid)
        local = self.ctl.home / "annotations"

        def work(progress, cancel):
            from workstation.labels.annotation_save import saved_locally
            from workstation.labels.annotation_sets import list_sets, set_review_state

            extra = saved_locally(local, study)
            return [ListedSet(s, set_review_state(s)) for s in list_sets(client, study, extra_paths=extra)]

        return self.window.runner.submit("list annotation sets", work, on_done=self._listed,
                                         on_failed=lambda msg: self.ctl.status(f"Annotation sets not listed: {msg}"))

    def _listed(self, listed: list[ListedSet]) -> None:
        self.listed = listed
        self.box.show_sets(listed)
        self.box.info.setText(f"{len(listed)} annotation set(s)" if listed else "No annotation sets in this study yet")

    # -- opening ------------------------------------------------------------------------------------------
    def open_current(self, *, editable: bool):
        entry = self.box.current()
        if entry is None:
            self.ctl.status("Annotation sets: pick a set first")
            return None
        return self.open(entry.annotation_set, editable=editable, layer=self.box.layer.value() - 1)

    def open(self, annotation_set: AnnotationSet, *, editable: bool, layer: int = 0):
        """Load the set's latest revision (off the GUI thread) and show it, editable or read-only."""
        if editable and not self.ctl.panel.annotator.text().strip():
            self.ctl.status("Annotate: enter your name first (annotations are kept per annotator)")
            return None
        _, client = self._owner((annotation_set.seg or annotation_set.sr)[-1].series_instance_uid)

        def work(progress, cancel):
            from workstation.labels.annotation_sets import load_set

            return load_set(client, annotation_set)

        return self.window.runner.submit(
            "open annotation set", work, on_done=lambda loaded: self._opened(loaded, editable, layer),
            on_failed=lambda msg: self.ctl.status(f"Annotation set not opened: {msg}"))

    def _opened(self, loaded: LoadedSet, editable: bool, layer: int) -> None:
        from workstation.labels.annotation_save import annotation_from_set
        from workstation.labels.annotation_sets import AnnotationSetError

        ctl = self.ctl
        layers = len(loaded.layers)
        self.box.layer.setRange(1, max(1, layers))
        volume = self._show_series(loaded)
        if volume is None:
            ctl.status(f"{loaded.annotation_set.name} has no label map (SR only): open the image series it reports "
                       "on first, then open the set again")
            return
        annotator = ctl.panel.annotator.text().strip() or loaded.annotation_set.annotator
        base = ctl.base_schema
        try:
            doc = annotation_from_set(loaded, volume, annotator=annotator, base_segments=base.model_segments(),
                                      layer=min(layer, max(0, layers - 1)), schema=base.name)
        except (AnnotationSetError, ValueError) as exc:
            ctl.status(f"Annotation set not opened: {exc}")
            return
        if not ctl.show_opened(doc, volume, _extended_schema(base, doc.segments), editable=editable):
            return  # (unsaved work of this annotator on the series comes first: said)
        self.opened = loaded if editable else None
        note = ""
        if layers > 1:
            shown = loaded.layers[min(layer, layers - 1)]
            note = (f" Its segments overlap, so it is {layers} separate layers (never merged): showing layer "
                    f"{min(layer, layers - 1) + 1} ({', '.join(s.name for s in shown.segments)}); "
                    "pick another with the layer box and open again.")
        s = loaded.annotation_set
        what = ("for editing: Save makes a new revision of your own set" if editable
                else "read-only: Open for editing to change it")
        ctl.status(f"Opened {s.name} revision {s.revision} by {s.annotator} {what}.{note}")
        self.box.info.setText(note.strip() or f"{s.name}: {len(loaded.findings)} finding(s), "
                              f"{len(loaded.measurements)} measurement(s), {loaded.review_state}")

    def _show_series(self, loaded: LoadedSet):
        """The volume the set is drawn on: the series shown in the active view when it is the set's own
        series on the same grid, else the set's series put into the active view (None: an SR whose series
        is not shown)."""
        vp = self.window.viewer.active_slice_viewport()
        shown = None if vp is None else vp.volume
        target = loaded.volume
        if target is None:  # an SR only: its marks go on the series its findings lie on, when that is shown
            on = {f.series_instance_uid for f in loaded.findings}
            return shown if shown is not None and shown.info.series_instance_uid in on else None
        if shown is not None and shown.info.series_instance_uid == target.info.series_instance_uid \
                and loaded.layers and loaded.layers[0].is_on_grid_of(shown):
            return shown
        if vp is not None:
            vp.set_volume(target)
        return target

    # -- saving -------------------------------------------------------------------------------------------
    def save(self, doc, set_name: str):
        """Write the next revision of the annotator's own set and queue it for the series' archive."""
        target, client = self._owner(doc.series_uid)
        archive = self.window.archive
        sync = getattr(self.window, "sync", None)
        out_dir = self.ctl.home / "annotations"
        measurements = tuple(self.opened.measurements) if self.opened is not None else ()
        outbox_dir = self.ctl.home / "outbox"

        revision = doc.revision  # what is saved (the autosave of it is then no longer unsaved work)

        def work(progress, cancel):
            from workstation.dicom.seg import read_source_headers
            from workstation.labels.annotation_save import save_annotation

            sources = read_source_headers(archive.fetch_series(doc.series_uid))
            saved = save_annotation(doc, sources, out_dir, set_name=set_name, archive=client,
                                    measurements=measurements)
            if sync is not None:  # the application's sync service: its worker sends them at once
                for path in saved.paths:
                    sync.enqueue(path, target)
                sync.wake()
            else:
                from workstation.sync.outbox import Outbox

                with Outbox(outbox_dir) as outbox:
                    for path in saved.paths:
                        outbox.enqueue(path, target)
            return saved, target

        return self.window.runner.submit("save annotation", work, on_done=lambda r: self._saved(*r, doc, revision),
                                         on_failed=lambda msg: self.ctl.status(f"Annotation not saved: {msg}"))

    def _saved(self, saved, target: str, doc=None, revision: int | None = None) -> None:
        if doc is not None and revision is not None:
            self.ctl.recovery.revision_saved(doc, revision)
        names = " + ".join(k for k, p in (("SEG", saved.seg_path), ("SR", saved.sr_path)) if p is not None)
        self.ctl.status(f"Saved revision {saved.revision} of {saved.set_name} ({names}); "
                        f"sending to {target} (see the Sync panel)")
        self.refresh()  # the new revision is listed at once (from the local copy until it is sent)


def _extended_schema(base: LabelSchema, segments) -> LabelSchema:
    """The schema plus the segments an opened set brought that it lacks (no attributes, every tool)."""
    known = {s.segment.number for s in base.segments}
    extra = tuple(SchemaSegment(s, EDIT_TOOLS, ()) for s in segments if s.number not in known)
    return replace(base, segments=base.segments + extra) if extra else base

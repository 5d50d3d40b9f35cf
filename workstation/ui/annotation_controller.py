"""The Annotate dock wired to the viewers: start an annotation on the active series, draw in any 2D view or
MPR plane, undo/redo (Ctrl+Z / Ctrl+Shift+Z), autosave within a second, restore after a crash, start from
the AI result, open a stored annotation set (editable or read-only), and save: each save is a new revision
(SEG + SR) of the annotator's own set, sent through the sync service to the archive the series came from.
"""

from __future__ import annotations

import datetime as dt
import getpass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QFileDialog

from workstation.labels.autosave import AutosaveStore, Autosaver
from workstation.labels.schema import LabelSchema, SchemaError, Tool, available_schemas, load_schema
from workstation.model.annotation import Annotation
from workstation.model.volume import Volume
from workstation.ui.annotation_panel import AnnotationPanel
from workstation.ui.annotation_recovery import AutosaveRecovery
from workstation.ui.annotation_sets_ui import AnnotationSetsFlow
from workstation.ui.annotation_tools import MOUSE_TOOLS, AnnotationOverlay, AnnotationSession
from workstation.ui.qt_compat import emitter
from workstation.ui.tools import Tool as ViewTool

DEFAULT_SCHEMA = "lung-nodule"


class _Bridge(QObject):
    """Autosave callbacks come from its thread: these signals bring them to the GUI thread."""

    saved = Signal(object, int)
    failed = Signal(str)


class AnnotationController(QObject):
    def __init__(self, window, home: Path | str, *, annotator: str | None = None) -> None:
        super().__init__(window)
        self.window = window
        self.home = Path(home)
        self.store = AutosaveStore(self.home / "autosave")
        self.doc: Annotation | None = None
        self.volume: Volume | None = None
        self.session: AnnotationSession | None = None
        self.autosaver: Autosaver | None = None
        self.schema: LabelSchema | None = None  # what the panel shows: the schema + an opened set's segments
        self.base_schema: LabelSchema | None = None  # the label schema chosen
        self.overlays: dict[int, AnnotationOverlay] = {}
        self._bridge = _Bridge(self)
        self._bridge.saved.connect(self._on_autosaved)
        self._bridge.failed.connect(self._on_autosave_failed)
        self.panel = AnnotationPanel()
        self.panel.annotator.setText(annotator or _user())
        self.sets = AnnotationSetsFlow(self, self.panel.sets_box)
        self.recovery = AutosaveRecovery(self)  # autosaved work offered (Restore / Discard)
        self.dock = QDockWidget("Annotate", window)
        self.dock.setObjectName("annotate_dock")
        self.dock.setWidget(self.panel)
        window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.dock.hide()
        self._connect_panel()
        self._build_actions()
        for vp in self.slice_viewports():
            vp.volume_changed.connect(lambda v=vp: self._on_volume(v))
            vp.slice_changed.connect(lambda v=vp: self._on_slice(v))
        self.load_schema(DEFAULT_SCHEMA)
        window.installEventFilter(self)  # closing the window writes the pending autosave first

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt name)
        if obj is self.window and event.type() == QEvent.Type.Close:
            self.stop()
        return False

    # -- wiring ---------------------------------------------------------------------------------------------
    def _connect_panel(self) -> None:
        p = self.panel
        p.schema_requested.connect(self.load_schema)
        p.schema_file_requested.connect(self._pick_schema_file)
        p.segment_changed.connect(self._on_segment)
        p.tool_changed.connect(self.set_tool)
        p.action_requested.connect(self._on_action)
        p.attribute_changed.connect(self._on_attribute)
        p.settings_changed.connect(self._apply_settings)
        p.outline.toggled.connect(self.set_outline)
        p.start_button.clicked.connect(self.start)
        p.undo_button.clicked.connect(self.undo)
        p.redo_button.clicked.connect(self.redo)
        p.save_button.clicked.connect(self.save)

    def _build_actions(self) -> None:
        w = self.window
        self.toggle_action = QAction("Annotate", w)
        self.toggle_action.setShortcut(QKeySequence("Ctrl+Shift+A"))
        self.toggle_action.triggered.connect(self.show)
        self.undo_action = QAction("Undo annotation edit", w)
        self.undo_action.setShortcut(QKeySequence("Ctrl+Z"))
        self.undo_action.triggered.connect(self.undo)
        self.redo_action = QAction("Redo annotation edit", w)
        self.redo_action.setShortcut(QKeySequence("Ctrl+Shift+Z"))
        self.redo_action.triggered.connect(self.redo)
        for a in (self.toggle_action, self.undo_action, self.redo_action):
            a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            w.addAction(a)
        menu = w.menuBar().addMenu("A&nnotate")
        for a in (self.toggle_action, self.undo_action, self.redo_action):
            menu.addAction(a)

    def slice_viewports(self) -> list:
        viewer = self.window.viewer
        return [*viewer.viewports, *viewer.mpr.slice_viewports()]

    def show(self) -> None:
        self.dock.show()
        self.dock.raise_()
        self.sets.refresh_if_new_study()

    def status(self, text: str) -> None:
        self.panel.status.setText(text)
        self.window.show_status(text)

    # -- schema ---------------------------------------------------------------------------------------------
    def load_schema(self, name_or_path: str | Path) -> bool:
        try:
            schema = load_schema(name_or_path)
        except SchemaError as exc:
            self.status(f"Label schema not loaded: {exc}")
            return False
        if self.doc is not None and schema.name != self.schema.name:  # type: ignore[union-attr]
            self.status("Finish (save) the current annotation before switching schema")
            return False
        self.schema = self.base_schema = schema
        self.panel.show_schema(schema)
        return True

    def _follow_modality(self, modality: str) -> None:
        """With no annotation under way, a series of another modality gets the first shipped schema made for it
        (brain-mr for an MR, lung-nodule for a CT); a schema the annotator chose that fits is kept."""
        current = self.base_schema
        if not modality or (current is not None and (not current.modalities or modality in current.modalities)):
            return
        for name in available_schemas():
            try:
                schema = load_schema(name)
            except SchemaError:
                continue
            if modality in schema.modalities:
                self.panel.schema_box.setCurrentText(name)  # the panel asks for it: one path for both
                if self.base_schema is not schema and self.base_schema.name != name:
                    self.load_schema(name)
                return

    def _pick_schema_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Label schema", str(self.home), "Label schema (*.toml)")
        if path:
            self.load_schema(path)

    # -- starting, restoring ----------------------------------------------------------------------------------
    def start(self) -> Annotation | None:
        """Begin annotating the series in the active view.

        When autosaved work of this annotator on this series is there, nothing begins: it is offered
        (Restore / Discard), and a fresh annotation starts only once it is discarded.  (A fresh annotation
        edited beside the offer would have autosaved over it.)"""
        vp = self.window.viewer.active_slice_viewport()
        volume = None if vp is None else vp.volume
        if volume is None or self.schema is None:
            self.status("Annotate: open a series first")
            return None
        annotator = self.panel.annotator.text().strip()
        if not annotator:
            self.status("Annotate: enter your name first (annotations are kept per annotator)")
            return None
        info = volume.info
        series_uid = info.series_instance_uid or "unknown"
        offered, aside = self.recovery.before_start(info.study_instance_uid, series_uid, annotator)
        if offered:
            return None
        self.stop()
        self._reset_schema()
        segments = self.schema.model_segments()
        dtype = np.uint8 if max(s.number for s in segments) < 256 else np.uint16
        doc = Annotation(np.zeros(volume.shape, dtype), volume.affine.copy(), segments,
                         study_uid=info.study_instance_uid, series_uid=series_uid,
                         annotator=annotator, frame_of_reference_uid=info.frame_of_reference_uid,
                         schema=self.schema.name)
        self._begin(doc, volume)
        if aside:
            self.status(aside)
        return doc

    def begin_restored(self, doc: Annotation, volume: Volume) -> None:
        """Annotate on with ``doc``, read back from its autosave (so already on disk)."""
        self.stop()
        self._reset_schema()
        self._begin(doc, volume)
        self.autosaver.saved_revision = doc.revision
        self._on_changed(None)

    def _reset_schema(self) -> None:
        """Back to the chosen label schema (an opened set's extra segments do not carry over)."""
        if self.schema is not self.base_schema:
            self.schema = self.base_schema
            self.panel.show_schema(self.schema)
        self.sets.opened = None

    def _begin(self, doc: Annotation, volume: Volume) -> None:
        self.doc, self.volume = doc, volume
        self.session = AnnotationSession(doc, volume, self._on_changed, self.status)
        self.autosaver = Autosaver(doc, self.store, on_saved=emitter(self._bridge.saved),
                                   on_error=emitter(self._bridge.failed))
        self._apply_settings()
        seg = self.panel.current_segment()
        if seg is not None:
            self._on_segment(seg)
        for vp in self.slice_viewports():
            vp.tools.annotator = self.session
            vp.set_tool(ViewTool.ANNOTATE)
            self._show_on(vp)
        self.panel.select_tool(self.session.tool)
        self.show()
        self.status(f"Annotating {volume.info.series_description or doc.series_uid} as {doc.annotator}")

    def show_opened(self, doc: Annotation, volume: Volume, schema: LabelSchema, *, editable: bool) -> bool:
        """Show an annotation read from a stored set: editable (tools, autosave) or read-only (drawn only).

        Not for editing while this annotator has unsaved work on the series (its autosave would be written
        over): that work is offered instead (False)."""
        if editable and self.recovery.unsaved_work_of(doc):
            return False
        self.stop()
        self.schema = schema
        self.panel.show_schema(schema)
        if editable:
            self._begin(doc, volume)
            self._on_changed(None)
            return True
        self.doc, self.volume = doc, volume
        for vp in self.slice_viewports():
            self._show_on(vp)
        self.show()
        return True

    def stop(self) -> None:
        """End the current annotation (its autosave is written first); the views go back to W/L."""
        if self.autosaver is not None:
            self.autosaver.close()
        if self.session is not None:
            self.session.close()
        for vp in self.slice_viewports():
            vp.tools.annotator = None
            if vp.tools.left_tool is ViewTool.ANNOTATE:
                in_mpr = vp in self.window.viewer.mpr.slice_viewports()
                vp.set_tool(ViewTool.CROSSHAIR if in_mpr else ViewTool.WINDOW)
        self.doc = self.session = self.autosaver = None
        for vp in self.slice_viewports():
            self._show_on(vp)

    # -- overlays ---------------------------------------------------------------------------------------------
    def set_outline(self, on: bool) -> None:
        """Draw the annotation's labels as their edges (True) or filled (False), in every view."""
        if self.panel.outline.isChecked() != bool(on):
            self.panel.outline.setChecked(bool(on))  # comes back here through the box's signal
            return
        for vp in self.slice_viewports():
            overlay = self.overlays.get(id(vp))
            if overlay is not None:
                overlay.layer.set_outline(on)
                vp.canvas.request_render()

    def _show_on(self, vp) -> None:
        overlay = self.overlays.get(id(vp))
        if overlay is None:
            if self.doc is None:
                return
            overlay = self.overlays[id(vp)] = AnnotationOverlay(vp.view)
            overlay.layer.set_outline(self.panel.outline.isChecked())
        overlay.show(self.doc)
        overlay.show_marks(self.doc)
        vp.refresh()

    def _on_slice(self, vp) -> None:
        overlay = self.overlays.get(id(vp))
        if overlay is not None and self.doc is not None and self.doc.marks:
            overlay.show_marks(self.doc)

    def _on_volume(self, vp) -> None:
        """A view shows another volume: follow with the overlay, and offer autosaved work on the series."""
        self._show_on(vp)
        vol = vp.volume
        if vol is not None and self.doc is None:
            self._follow_modality(vol.info.modality)
        annotator = self.panel.annotator.text().strip()
        if vol is None or not annotator or (self.doc is not None and self.doc.series_uid == vol.info.series_instance_uid):
            return
        self.recovery.on_volume(vol, annotator)

    def _on_changed(self, box) -> None:
        """An edit (box: its changed voxels) or a preview: redraw the views that show this annotation."""
        for vp in self.slice_viewports():
            overlay = self.overlays.get(id(vp))
            if overlay is not None and overlay.layer.labelmap is not None:
                if box is not None:
                    overlay.changed(box)
                    if overlay.shows_box(box):  # views whose plane misses the edit keep their frame
                        vp.canvas.request_render()
                else:  # marks, previews, undo of a mark: cheap to redraw
                    overlay.show_marks(self.doc)
                    vp.canvas.request_render()
            elif self.session is not None and vp.view is getattr(self.session._drag, "view", None):
                vp.canvas.request_render()
        if self.autosaver is not None:
            self.autosaver.changed()
        if self.doc is not None:
            self.panel.undo_button.setEnabled(self.doc.undo_stack.can_undo)
            self.panel.redo_button.setEnabled(self.doc.undo_stack.can_redo)
            self._show_missing()

    def _on_autosaved(self, path, revision: int) -> None:
        if self.autosaver is not None and self.autosaver.last_error:
            return  # a late report of an earlier write: the failure message stays until a write succeeds
        self.panel.status.setText(f"Autosaved {dt.datetime.now().strftime('%H:%M:%S')}")

    def _on_autosave_failed(self, message: str) -> None:
        self.status(message)

    # -- tools --------------------------------------------------------------------------------------------
    def set_tool(self, tool: Tool) -> None:
        if self.session is None and self.start() is None:  # picking a tool starts on the active series
            return
        if tool not in MOUSE_TOOLS:
            raise ValueError(f"{tool} is not a mouse tool")
        if self.session.tool is Tool.POLYGON and tool is not Tool.POLYGON:
            self.session.close_polygon()
        self.session.tool = tool
        self.panel.select_tool(tool)
        for vp in self.slice_viewports():
            vp.set_tool(ViewTool.ANNOTATE)
        self.status(f"Annotation tool: {tool.value.replace('_', ' ')}")

    def _apply_settings(self) -> None:
        s, p = self.session, self.panel
        if s is None:
            return
        s.radius_mm = p.brush_mm.value()
        s.sphere = p.sphere.isChecked()
        s.hu_range = (p.hu_low.value(), p.hu_high.value())

    def _on_segment(self, number: int) -> None:
        if self.session is not None:
            self.session.segment = int(number)
        self._show_attributes()

    def _show_attributes(self) -> None:
        if self.schema is None:
            return
        number = self.panel.current_segment()
        if number is None:
            return
        entry = self.schema.segment(number)
        values = {} if self.doc is None else self.doc.attributes.get(number, {})
        self.panel.show_attributes([self.schema.attribute(k) for k in entry.attributes], dict(values))
        self._show_missing()

    def _on_attribute(self, key: str, value) -> None:
        number = self.panel.current_segment()
        if self.doc is None or number is None:
            return
        self.doc.set_attribute(number, key, value)
        if self.autosaver is not None:
            self.autosaver.changed()
        self._show_missing()

    def missing_attributes(self) -> dict[str, list[str]]:
        """Per segment with labels or marks, the required attributes still unset."""
        if self.doc is None or self.schema is None:
            return {}
        used = {int(v) for v in np.unique(self.doc.labels) if v} | {m.segment for m in self.doc.marks}
        out = {}
        for number in sorted(used):
            missing = self.schema.missing_attributes(number, self.doc.attributes.get(number, {}))
            if missing:
                out[self.schema.segment(number).segment.name] = missing
        return out

    def _show_missing(self) -> None:
        self.panel.show_missing([f"{seg}: {', '.join(keys)}" for seg, keys in self.missing_attributes().items()])

    def _on_action(self, tool: Tool) -> None:
        s = self.session
        if s is None:
            self.status("Annotate: start annotating a series first")
            return
        if tool is Tool.INTERPOLATE:
            vp = self.window.viewer.active_slice_viewport()
            if vp is not None:
                s.interpolate(vp.view)
        elif tool is Tool.SMOOTH:
            s.smooth()
        elif tool is Tool.REMOVE_ISLANDS:
            s.remove_islands()
        elif tool is Tool.FROM_AI:
            self.start_from_ai()

    def undo(self) -> None:
        if self.session is not None:
            self.session.undo()

    def redo(self) -> None:
        if self.session is not None:
            self.session.redo()

    # -- AI ---------------------------------------------------------------------------------------------------
    def start_from_ai(self) -> bool:
        """Copy the newest AI label map of this series into the annotation (one undoable edit)."""
        if self.doc is None or self.volume is None:
            self.status("Annotate: start annotating a series first")
            return False
        from workstation.ui.ai_controller import _same_volume

        shown = [(pid, s) for pid, s in self.window.ai.results.items() if _same_volume(s.volume, self.volume)]
        if not shown:
            self.status("No AI result for this series: run a model from the AI menu first")
            return False
        plugin_id, entry = shown[-1]
        ai = entry.result.labelmap
        if ai is None or ai.shape != self.doc.labels.shape:
            self.status("The AI result has no label map on this series' grid")
            return False
        mapped = _map_segments(ai, self.doc, self.session.segment)
        edit = self.doc.replace_labels(mapped, f"start from {entry.title}")
        self.window.ai.set_visible(plugin_id, False)  # the editable copy replaces it on screen
        self._on_changed(None if edit is None else edit.box)
        self.status(f"Started from {entry.title}: {int(np.count_nonzero(mapped))} voxels to review and edit")
        return True

    # -- saving -----------------------------------------------------------------------------------------------
    def save(self):
        """Save a new revision (SEG + SR of findings, marks and attributes) of the annotator's own set and
        queue it for the archive the series came from (the sync worker sends it at once)."""
        doc = self.doc
        if doc is None:
            self.status("Annotate: nothing to save")
            return None
        if self.session is None:
            self.status("This annotation set is open read-only: use \u201cOpen for editing\u201d to change it")
            return None
        missing = self.missing_attributes()
        if missing:
            self.status("Set the required attributes first: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in missing.items()))
            return None
        if self.autosaver is not None:
            self.autosaver.flush()
        return self.sets.save(doc, self.base_schema.name if self.base_schema else (doc.schema or "annotation"))


def _map_segments(ai, doc: Annotation, fallback: int) -> np.ndarray:
    """AI labels -> this schema's segment numbers (same type code or name; else the active segment)."""
    table = np.zeros(int(ai.labels.max(initial=0)) + 1, doc.labels.dtype)
    for s in ai.segments:
        if s.number >= len(table):
            continue
        match = next((t.number for t in doc.segments if (t.type.value, t.type.scheme) == (s.type.value, s.type.scheme)
                      or t.name.lower() == s.name.lower()), fallback)
        table[s.number] = match
    return table[ai.labels]


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


__all__ = ["AnnotationController"]

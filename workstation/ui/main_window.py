"""The main window: study browser dock, viewer area, menus, toolbar, status bar.

It receives its collaborators (archive, task runner) from :mod:`workstation.app`; it builds none.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QDockWidget, QLabel, QMainWindow, QMessageBox, QToolBar, QWidget

from workstation.ai.registry import Registry
from workstation.model.refs import SeriesRef
from workstation.model.volume import Volume
from workstation.render.presets import AUTO, WINDOW_PRESETS
from workstation.ui.ai_controller import AiController
from workstation.ui.import_flow import fill_import_menu
from workstation.ui.loading import series_loader
from workstation.ui.study_browser import StudyBrowser
from workstation.ui.tasks import TaskHandle, TaskRunner
from workstation.ui.tools import Tool
from workstation.ui.viewer_area import Layout, ViewerArea
from workstation.ui.viewport import SliceViewport
from workstation.ui.viewport_text import patient_name
from workstation.ui.window_layout import (LayoutMemory, add_annotation_tools, arrange_docks, fill_panels_menu,
                                          order_menus, scrollable)

APP_NAME = "Workstation"
_LAYOUT_KEYS = {Layout.ONE: "Ctrl+1", Layout.ONE_BY_TWO: "Ctrl+2", Layout.TWO_BY_TWO: "Ctrl+3", Layout.MPR: "Ctrl+4"}
_TOOL_KEYS = {Tool.WINDOW: "W", Tool.PAN: "P", Tool.ZOOM: "Z", Tool.LENGTH: "L", Tool.ELLIPSE: "E"}


class MainWindow(QMainWindow):
    def __init__(self, archive, runner: TaskRunner, parent: QWidget | None = None, *,
                 plugins: Registry | None = None) -> None:
        super().__init__(parent)
        self.archive = archive
        self.runner = runner
        self.volumes: dict[str, Volume] = {}  # series UID -> loaded volume (this session)
        self.body_parts: dict[str, str] = {}  # series UID -> Body Part Examined from the archive
        self.loading: dict[str, TaskHandle] = {}
        self.setWindowTitle(APP_NAME)
        self.viewer = ViewerArea()
        self.setCentralWidget(self.viewer)
        self.browser = StudyBrowser(archive, runner)
        self.dock = QDockWidget("Studies", self)
        self.dock.setObjectName("studies_dock")
        self.dock.setWidget(self.browser)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.dock)
        self.status_label = QLabel()
        self.statusBar().addPermanentWidget(self.status_label)
        self.hint = QLabel("Double-click a series in Studies to open it (File > Import, or drop files, to add more).")
        self.hint.setObjectName("empty_hint")
        self.statusBar().addWidget(self.hint, 1)  # shown between messages until the first series is open
        self.browser.open_series.connect(self.open_series)
        self.browser.open_prior.connect(self.open_prior)
        self.browser.status.connect(self.show_status)
        self.browser.import_flow.status.connect(self.show_status)
        self.viewer.status.connect(self.show_status)
        self.viewer.active_changed.connect(self._on_active_changed)
        self.ai = AiController(self, plugins or Registry(()), runner)
        self._build_actions()
        self.setAcceptDrops(True)
        self.resize(1400, 900)
        self.resizeDocks([self.dock], [430], Qt.Orientation.Horizontal)

    # -- actions -------------------------------------------------------------------------------------------
    def _action(self, text: str, slot, shortcut: str | QKeySequence | None = None, checkable=False) -> QAction:
        a = QAction(text, self)
        if shortcut:
            a.setShortcut(QKeySequence(shortcut))
        a.setCheckable(checkable)
        a.triggered.connect(slot)
        self.addAction(a)  # shortcuts work even when menus are hidden
        return a

    def _build_actions(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        fill_import_menu(file_menu, self.browser.import_flow)
        file_menu.addSeparator()
        file_menu.addAction(self._action("&Quit", self.close, QKeySequence.StandardKey.Quit))
        view_menu = menu.addMenu("&View")
        toolbar = QToolBar("Main")
        toolbar.setObjectName("main_toolbar")
        self.addToolBar(toolbar)
        self.layout_actions: dict[Layout, QAction] = {}
        group = QActionGroup(self)
        for layout, key in _LAYOUT_KEYS.items():
            a = self._action(f"Layout {layout.value}", lambda _=False, lay=layout: self.set_layout(lay), key, True)
            group.addAction(a)
            view_menu.addAction(a)
            toolbar.addAction(a)
            self.layout_actions[layout] = a
        self.layout_actions[Layout.ONE].setChecked(True)
        view_menu.addSeparator()
        presets = view_menu.addMenu("Window presets")
        for n, name in enumerate([*WINDOW_PRESETS, AUTO], start=1):
            key = str(n % 7) if name != AUTO else "0"
            presets.addAction(f"{name.capitalize()}\t{key}", lambda name=name: self.apply_preset(name))
        view_menu.addAction(self._action("Fit\tF", lambda: self._on_viewport(SliceViewport.fit)))
        view_menu.addAction(self._action("Reset view", lambda: self._on_viewport(SliceViewport.reset), "Ctrl+R"))
        view_menu.addAction(self._action("Cine play/stop\tC", lambda: self._on_viewport(SliceViewport.toggle_cine)))
        speed = view_menu.addMenu("Cine speed")
        speed_group = QActionGroup(self)
        for fps in (5, 10, 15, 25, 40):
            a = speed.addAction(f"{fps} frames/s", lambda fps=fps: self.set_cine_fps(fps))
            a.setCheckable(True)
            a.setChecked(fps == 10)
            speed_group.addAction(a)
        view_menu.addSeparator()
        view_menu.addAction(self._action("Show study browser", self._toggle_browser, "Ctrl+B"))
        self.panels_menu = view_menu.addMenu("Panels")
        self.link_action = self._action("Link scrolling", self.viewer.scroll_sync.set_enabled, "Ctrl+L", True)
        self.link_action.setChecked(True)
        view_menu.addAction(self.link_action)
        self.acquired_action = self._action("Show series as acquired", self.set_acquired_planes, checkable=True)
        self.acquired_action.setChecked(True)
        self.acquired_action.setToolTip("On: axial, coronal and sagittal are the image planes nearest to them, as "
                                        "the scanner acquired them. Off: along the patient's axes (an oblique "
                                        "series is resliced; the label tools then draw only after this is on)")
        view_menu.addAction(self.acquired_action)
        toolbar.addSeparator()
        self.tools_menu = menu.addMenu("&Tools")
        self._build_tools(self.tools_menu, toolbar)
        self.ai.fill_menu(menu.addMenu("&AI"))
        help_menu = menu.addMenu("&Help")
        help_menu.addAction(self._action("&About", self.about))

    def _build_tools(self, tools_menu, toolbar: QToolBar) -> None:
        self.tool_actions: dict[Tool, QAction] = {}
        self.current_tool = Tool.WINDOW
        self.tool_group = group = QActionGroup(self)
        for tool, key in _TOOL_KEYS.items():
            a = self._action(tool.value, lambda _=False, t=tool: self.set_tool(t), key, True)
            group.addAction(a)
            tools_menu.addAction(a)
            toolbar.addAction(a)
            self.tool_actions[tool] = a
        self.tool_actions[Tool.WINDOW].setChecked(True)
        tools_menu.addAction(self._action("Delete last measurement\tDel", lambda: self._on_viewport(
            lambda vp: vp.tools.delete_last())))
        tools_menu.addSeparator()
        self.rotate_action = self._action("MPR rotate", self._set_rotate, "Shift+R", True)
        tools_menu.addAction(self.rotate_action)
        toolbar.addAction(self.rotate_action)

    def finish_setup(self, layout_file: Path | None = None) -> None:
        """Arrange the docks every controller has added, order the menus, and restore the layout the user
        left last time from ``layout_file`` (saved again on close)."""
        docks = {d.objectName(): d for d in self.findChildren(QDockWidget)}
        right = [docks[n] for n in ("findings_dock", "annotate_dock") if n in docks]
        bottom = [docks[n] for n in ("sync_dock",) if n in docks]
        for dock in right:
            scrollable(dock)
        arrange_docks(self, self.dock, right, bottom)
        fill_panels_menu(self.panels_menu, [self.dock, *right, *bottom])
        annotation = getattr(self, "annotation", None)
        if annotation is not None:
            self.annotation_actions = add_annotation_tools(self, annotation, self.tools_menu, self.tool_group)
        order_menus(self, ["File", "View", "Tools", "Annotate", "AI", "Help"])
        self.layout_memory = LayoutMemory(layout_file) if layout_file is not None else None
        if self.layout_memory is not None:
            self.layout_memory.restore(self)

    # -- commands ------------------------------------------------------------------------------------------
    def set_acquired_planes(self, on: bool) -> None:
        """Every 2D and MPR view: the series as acquired (on) or along the patient's axes (off)."""
        on = bool(on)
        if self.acquired_action.isChecked() != on:
            self.acquired_action.setChecked(on)
        mpr = self.viewer.mpr
        for vp in [*self.viewer.viewports, *mpr.slice_viewports()]:
            vp.view.set_acquired_planes(on)
        for vp in self.viewer.viewports:
            vp.refresh()
        if mpr.volume is not None:  # the three planes through one point again (set_point redraws them)
            mpr.set_point(mpr.volume.nearest_voxel_lps(mpr.controller.point))

    def set_layout(self, layout: Layout) -> None:
        previous = self.viewer.active_slice_viewport()
        self.viewer.set_layout(layout)
        self.layout_actions[layout].setChecked(True)
        if layout is Layout.MPR and previous is not None and previous.volume is not None:
            vol = previous.volume
            if self.viewer.mpr.volume is not vol:
                self.viewer.mpr.set_volume(vol)
        self.ai.sync()

    def set_tool(self, tool: Tool) -> None:
        for vp in self.viewer.viewports:
            vp.set_tool(tool)
        self.tool_actions[tool].setChecked(True)
        self.current_tool = tool
        self.show_status(f"Tool: {tool.value}")

    def set_cine_fps(self, fps: int) -> None:
        for vp in self.findChildren(SliceViewport):
            vp.cine_fps = int(fps)
            if vp.cine.isActive():
                vp.cine.start(int(1000 / fps))

    def _set_rotate(self, on: bool) -> None:
        self.viewer.mpr.rotate_mode = bool(on)

    def apply_preset(self, name: str) -> None:
        self._on_viewport(lambda vp: vp.apply_preset(name))

    def _on_viewport(self, fn) -> None:
        vp = self.viewer.active_slice_viewport()
        if vp is not None:
            fn(vp)

    def _toggle_browser(self) -> None:
        self.dock.setVisible(not self.dock.isVisible())

    def about(self) -> None:
        QMessageBox.about(self, f"About {APP_NAME}",
                          f"<b>{APP_NAME}</b><p>Radiology reading workstation: local DICOM archive, "
                          "2D, MPR and 3D viewing, measurements, on-device AI models, annotation for "
                          "training, labels synced back to the archive as DICOM SEG and SR.</p>"
                          "<p>Not for diagnostic use.</p>")

    # -- loading -------------------------------------------------------------------------------------------
    def open_prior(self, ref: SeriesRef) -> TaskHandle | None:
        """Show a prior study's series beside the current one (1x2, current left), scrolling linked."""
        right = self.viewer.side_by_side()
        self.layout_actions[Layout.ONE_BY_TWO].setChecked(True)
        return self.open_series(ref, into=right)

    def open_series(self, ref: SeriesRef, into: SliceViewport | None = None) -> TaskHandle | None:
        """Load a series into ``into``, else the active viewport (into all three MPR planes in the MPR layout)."""
        uid = ref.series_instance_uid
        self.body_parts[uid] = ref.body_part  # for AI plugins that auto-run on one body part
        if into is None and self.viewer.layout_kind is Layout.MPR:
            return self._open_in_mpr(uid)
        vp = into or self.viewer.active_slice_viewport() or self.viewer.viewports[0]
        if uid in self.volumes:
            vp.set_volume(self.volumes[uid])
            self._update_title(self.volumes[uid])
            self.ai.sync()
            return None
        def setup(handle: TaskHandle) -> None:
            vp.watch_loading(handle)
            self.browser.watch_open(ref, handle)  # a remote series' transfer in the Downloads tab
            handle.finished.connect(lambda vol, u=uid: self._loaded(u, vol))
            handle.failed.connect(lambda msg: self._warn("Cannot open series", msg))

        return self.runner.submit(f"load {uid}", series_loader(self.archive, uid, vp.loader_callback()),
                                  setup=setup)

    def _open_in_mpr(self, uid: str) -> TaskHandle | None:
        if uid in self.volumes:
            self.viewer.mpr.set_volume(self.volumes[uid])
            return None
        def done(vol: Volume) -> None:
            self._loaded(uid, vol)
            self.viewer.mpr.set_volume(vol)

        return self.runner.submit(f"load {uid}", series_loader(self.archive, uid), on_done=done,
                                  on_failed=lambda msg: self._warn("Cannot open series", msg),
                                  on_progress=lambda p: self.show_status(p.text))

    def _loaded(self, uid: str, volume: Volume) -> None:
        self.hint.hide()
        self.volumes = {uid: volume, **{k: v for k, v in list(self.volumes.items())[:3]}}  # keep a few
        self._update_title(volume)
        self.ai.sync()
        self.ai.volume_opened(volume, self.body_parts.get(uid, ""))  # plugins set to auto-run on this kind
        for w in volume.info.warnings:
            self.show_status(w)

    def _update_title(self, volume: Volume) -> None:
        info = volume.info
        who = " ".join(x for x in (patient_name(info.patient_name), info.patient_id) if x)
        self.setWindowTitle(f"{who} - {APP_NAME}" if who else APP_NAME)

    def _on_active_changed(self, vp) -> None:
        vol = getattr(vp, "volume", None)
        if vol is not None:
            self._update_title(vol)
        self.ai.sync()

    def _warn(self, title: str, message: str) -> None:
        self.show_status(f"{title}: {message}")
        QMessageBox(QMessageBox.Icon.Warning, title, message, parent=self).open()

    def show_status(self, text: str) -> None:
        if text:
            self.statusBar().showMessage(text, 8000)

    # -- drag & drop, close --------------------------------------------------------------------------------
    def dragEnterEvent(self, ev) -> None:  # noqa: N802
        if ev.mimeData().hasUrls():
            ev.acceptProposedAction()

    def dropEvent(self, ev) -> None:  # noqa: N802
        self.browser.dropEvent(ev)

    def closeEvent(self, ev) -> None:  # noqa: N802
        if getattr(self, "layout_memory", None) is not None:
            self.layout_memory.save(self)
        self.runner.cancel_all()
        self.runner.wait(5000)
        self.release_views()
        super().closeEvent(ev)

    def release_views(self) -> None:
        """Stop cine timers and free every viewport's GL resources while all objects are still alive."""
        from workstation.ui.vtk_widget import _CanvasMixin

        for w in self.findChildren(QWidget):
            if isinstance(w, _CanvasMixin):
                w.close_canvas()
        for vp in self.findChildren(SliceViewport):
            vp.cine.stop()

"""The AI menu: run a discovered plugin on the active viewport's volume, show its results.

A run goes through the :class:`TaskRunner` (progress and a Cancel button in the status bar).  When it is
done the label map is overlaid on every 2D viewport (and MPR plane) that shows the same volume, one
"Show <model> overlay" toggle per model, and the findings go to the findings dock.  A plugin that cannot
run (wrong modality, model file missing or broken) says why in the status bar and a message box.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDockWidget, QMenu, QProgressBar, QToolButton

from workstation.ai.registry import Plugin, Registry
from workstation.model.finding import Finding
from workstation.model.volume import Volume
from workstation.ui.findings_panel import FindingsPanel
from workstation.ui.tasks import TaskHandle, TaskRunner

if TYPE_CHECKING:  # the runner pulls in onnxruntime and SimpleITK: loaded on the first run, not at start-up
    from workstation.ai.runner import AiResult, RunOptions


@dataclass
class _Shown:
    """One model's latest result and whether its overlay is switched on."""

    result: AiResult
    volume: Volume
    title: str
    toggle: QAction
    visible: bool = True


class AiController(QObject):
    def __init__(self, window, registry: Registry, runner: TaskRunner, options: RunOptions | None = None) -> None:
        super().__init__(window)
        self.window = window
        self.registry = registry
        self.runner = runner
        self.options = options  # None: from the environment, at the first run
        self.results: dict[str, _Shown] = {}  # plugin id -> latest result
        self.task: TaskHandle | None = None
        self.opacity = 0.5
        self.panel = FindingsPanel()
        self.dock = QDockWidget("AI findings", window)
        self.dock.setObjectName("findings_dock")
        self.dock.setWidget(self.panel)
        window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.dock.hide()
        self.panel.jump_requested.connect(self.jump_to)
        self.panel.opacity_changed.connect(self.set_opacity)
        self._build_status_widgets()

    def _build_status_widgets(self) -> None:
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setMaximumHeight(16)
        self.cancel_button = QToolButton()
        self.cancel_button.setText("Cancel AI")
        self.cancel_button.clicked.connect(self.cancel)
        bar = self.window.statusBar()
        bar.addPermanentWidget(self.progress)
        bar.addPermanentWidget(self.cancel_button)
        self._set_busy(False)

    # -- menu ----------------------------------------------------------------------------------------------
    def fill_menu(self, menu: QMenu) -> None:
        self.menu = menu
        self.run_actions: dict[str, QAction] = {}
        for plugin in self.registry.plugins:
            a = menu.addAction(f"Run {plugin.manifest.title} ({plugin.manifest.version})")
            a.setToolTip(plugin.manifest.description)
            a.triggered.connect(lambda _=False, p=plugin: self.run(p))
            self.run_actions[plugin.id] = a
        if not self.registry.plugins:
            menu.addAction("No AI plugins installed").setEnabled(False)
        for where, why in self.registry.problems:
            menu.addAction(f"Plugin not loaded: {where}").setToolTip(why)
        menu.addSeparator()
        self._toggle_anchor = menu.addSeparator()
        menu.addAction("Show findings panel", self.dock.show)

    def _toggle_for(self, plugin: Plugin) -> QAction:
        existing = self.results.get(plugin.id)
        if existing is not None:
            return existing.toggle
        a = QAction(f"Show {plugin.manifest.title} overlay", self)
        a.setCheckable(True)
        a.toggled.connect(lambda on, pid=plugin.id: self.set_visible(pid, on))
        self.menu.insertAction(self._toggle_anchor, a)
        return a

    # -- running -------------------------------------------------------------------------------------------
    def run(self, plugin: Plugin) -> TaskHandle | None:
        """Run ``plugin`` on the active viewport's volume in the background."""
        vp = self.window.viewer.active_slice_viewport()
        volume = None if vp is None else vp.volume
        if volume is None:
            self.window.show_status("AI: open a series first")
            return None
        if self.task is not None and not self.task.is_done:
            self.window.show_status("AI: a model is already running")
            return None
        from workstation.ai.runner import RunOptions, run_plugin

        options = self.options or RunOptions.from_env()

        def work(progress, cancel) -> AiResult:
            return run_plugin(plugin, volume, options, progress=progress, cancel=cancel)

        def setup(handle: TaskHandle) -> None:
            self.task = handle
            self._set_busy(True, f"{plugin.manifest.title}: starting")
            handle.done.connect(lambda: self._set_busy(False))

        self.window.show_status(f"AI: running {plugin.manifest.title} on the active series")
        return self.runner.submit(f"ai {plugin.id}", work, setup=setup,
                                  on_progress=self._on_progress,
                                  on_done=lambda result: self.show_result(plugin, result, volume),
                                  on_failed=lambda msg: self.window._warn(f"{plugin.manifest.title} did not run", msg))

    def cancel(self) -> None:
        if self.task is not None and not self.task.is_done:
            self.task.cancel()
            self.window.show_status("AI: cancelling...")

    def _on_progress(self, p) -> None:
        if p.total:
            self.progress.setRange(0, p.total)
            self.progress.setValue(p.done)
        self.progress.setFormat(f"AI: {p.text}")
        self.window.show_status(f"AI: {p.text}")

    def _set_busy(self, busy: bool, text: str = "") -> None:
        self.progress.setVisible(busy)
        self.cancel_button.setVisible(busy)
        if busy:
            self.progress.setRange(0, 0)
            self.progress.setFormat(text)

    # -- results -------------------------------------------------------------------------------------------
    def show_result(self, plugin: Plugin, result: AiResult, volume: Volume) -> None:
        """Overlay ``result`` on the views of ``volume`` and list its findings (replacing an older run)."""
        title = f"{plugin.manifest.title} {result.plugin_version}"
        toggle = self._toggle_for(plugin)
        self.results.pop(plugin.id, None)  # newest last: it is the one drawn when several are on
        self.results[plugin.id] = _Shown(result, volume, title, toggle)
        toggle.blockSignals(True)
        toggle.setChecked(True)
        toggle.blockSignals(False)
        self.panel.clear_model(result.plugin_id)
        self.panel.add_findings([_titled(f, plugin) for f in result.findings], volume, title)
        self.dock.show()
        self.sync()
        n = len(result.findings)
        self.window.show_status(f"AI: {title} done in {result.timings_s.get('total', 0.0):.1f} s, "
                                f"{n} finding{'s' if n != 1 else ''} (AI-generated, review them)")

    def set_visible(self, plugin_id: str, on: bool) -> None:
        shown = self.results.get(plugin_id)
        if shown is not None:
            shown.visible = bool(on)
            shown.toggle.setChecked(bool(on))
            self.sync()

    def set_opacity(self, opacity: float) -> None:
        self.opacity = float(opacity)
        self.sync()

    def slice_viewports(self) -> list:
        viewer = self.window.viewer
        return [*viewer.viewports, *viewer.mpr.slice_viewports()]

    def sync(self) -> None:
        """Give each 2D view the visible overlay of the volume it shows (the newest run wins), or none."""
        for vp in self.slice_viewports():
            view = vp.view
            match = [s for s in self.results.values() if s.visible and _same_volume(s.volume, view.volume)]
            labelmap = match[-1].result.labelmap if match else None
            current = None if view.labels is None else view.labels.labelmap
            if labelmap is None and view.labels is None:
                continue
            if labelmap is not current:
                view.set_labelmap(labelmap)
            view.labels.set_opacity(self.opacity)
            vp.refresh()

    def jump_to(self, finding: Finding) -> None:
        """Show the finding's centroid in the middle of the active view (every plane, in MPR)."""
        centroid = finding.centroid_mm
        viewer = self.window.viewer
        if viewer.mpr.isVisible() and viewer.mpr.volume is not None:
            viewer.mpr.set_point(centroid)
            targets = viewer.mpr.slice_viewports()
        else:
            vp = viewer.active_slice_viewport()
            targets = [] if vp is None or vp.volume is None else [vp]
        for vp in targets:
            vp.view.center_on(centroid)
            vp.refresh()
        self.window.show_status(f"{finding.label}: centroid at ({centroid[0]:.1f}, {centroid[1]:.1f}, "
                                f"{centroid[2]:.1f}) mm")


def _same_volume(a: Volume | None, b: Volume | None) -> bool:
    if a is None or b is None:
        return False
    if a is b:
        return True
    uid_a, uid_b = a.info.series_instance_uid, b.info.series_instance_uid
    return bool(uid_a) and uid_a == uid_b and a.shape == b.shape


def _titled(finding: Finding, plugin: Plugin) -> Finding:
    """The finding with the model's title in its provenance (for the panel's labels)."""
    from dataclasses import replace

    if finding.provenance.model_title:
        return finding
    return replace(finding, provenance=replace(finding.provenance, model_title=plugin.manifest.title))

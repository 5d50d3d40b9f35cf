"""The AI menu: run a discovered plugin on a volume, show its results, auto-run plugins on matching series.

A run goes through the :class:`TaskRunner` (progress and a Cancel button in the status bar).  When it is
done its results are drawn on every 2D viewport (and MPR plane) that shows the same volume -- label maps,
detection boxes and points, heatmaps -- and in the 3D pane label maps as surfaces, boxes as wireframes,
points as spheres and the newest heatmap as a see-through surface at the manifest's threshold; one "Show
<model> results" toggle per model switches all of them, and "Outline <model> labels" draws its label map as
boundaries only.  The ``ai_threads`` setting (:meth:`configure`) sets the inference threads of a run.  Findings go to the findings dock (classification scores as
a line there).  Every overlay and row is marked AI-generated with the model's name and version.  Plugins
named in the ``ai_autorun`` setting run by themselves when a series of their modality opens, one at a time.
A plugin that cannot run says why in the status bar and a message box.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDockWidget, QMenu, QProgressBar, QToolButton

from workstation.ai.registry import Plugin, Registry
from workstation.model.finding import Finding, FindingKind, Status
from workstation.model.labelmap import AlgorithmType, LabelMap
from workstation.model.volume import Volume
from workstation.render.detections_layer import DetectionsLayer, Drawn
from workstation.render.heatmap_layer import HeatmapLayer
from workstation.ui.ai_store import AiResultsStore
from workstation.ui.findings_panel import FindingsPanel
from workstation.ui.tasks import TaskHandle, TaskRunner

if TYPE_CHECKING:  # the runner pulls in onnxruntime and SimpleITK: loaded on the first run, not at start-up
    from workstation.ai.runner import AiResult, RunOptions

_REJECTED_COLOUR = (0.55, 0.55, 0.55)
_DEFAULT_COLOUR = (1.0, 0.65, 0.0)


@dataclass
class _Shown:
    """One model's latest result, the label map as edited since, and whether its overlays are switched on."""

    result: AiResult
    volume: Volume
    title: str
    toggle: QAction
    plugin: Plugin
    visible: bool = True
    labelmap: LabelMap | None = None


def matches_input(plugin: Plugin, volume: Volume, body_part: str = "") -> bool:
    """The volume is what the plugin takes: a greyscale series of one of its modalities and, when both the
    manifest and the series name one, of its body part (DICOM Body Part Examined, e.g. HEAD)."""
    wanted = plugin.manifest.input.body_part.strip().upper()
    if wanted and body_part.strip() and body_part.strip().upper() != wanted:
        return False
    return volume.voxels.ndim == 3 and volume.info.modality in plugin.manifest.input.modalities


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
        self.autorun: tuple[str, ...] = ()
        self.threads = 0  # the ai_threads setting: onnxruntime intra-op threads, 0 = its default
        self.outlined: dict[str, bool] = {}  # plugin id -> label map drawn as outlines (else filled)
        self.outline_actions: dict[str, QAction] = {}  # plugin id -> its "Outline ... labels" menu action
        self._queue: list[tuple[Plugin, Volume]] = []
        self._autorun_seen: set[tuple[str, str]] = set()  # (plugin id, series) already started automatically
        self._detections: WeakKeyDictionary = WeakKeyDictionary()  # SliceView -> DetectionsLayer
        self._heatmaps: WeakKeyDictionary = WeakKeyDictionary()  # SliceView -> HeatmapLayer
        self.panel = FindingsPanel()
        self.dock = QDockWidget("AI findings", window)
        self.dock.setObjectName("findings_dock")
        self.dock.setWidget(self.panel)
        window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.dock.hide()
        self.panel.jump_requested.connect(self.jump_to)
        self.panel.opacity_changed.connect(self.set_opacity)
        self.panel.decided.connect(self._on_decided)
        self.panel.deleted.connect(lambda _f: self.sync())
        self.store = AiResultsStore(self)  # "Store AI results to archive"
        self.panel.store_requested.connect(self.store_results)
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

    def configure(self, *, user: str = "", autorun: Sequence[str] = (), results_dir=None, threads: int = 0) -> None:
        """Who signs decisions (default: the OS user), which plugins run by themselves on matching series,
        where stored results are written before they are queued (``<home>/ai-results``), and how many
        inference threads a run uses (0: onnxruntime's default)."""
        if int(threads) < 0:
            raise ValueError(f"AI threads must be 0 (onnxruntime's default) or more, got {threads}")
        self.threads = int(threads)
        if results_dir is not None:
            self.store.results_dir = Path(results_dir)
        if user.strip():
            self.panel.user = user.strip()
        known = {p.id for p in self.registry.plugins}
        missing = [pid for pid in autorun if pid not in known]
        if missing:
            self.window.show_status(f"AI auto-run: no plugin {', '.join(map(repr, missing))} is installed")
        self.autorun = tuple(pid for pid in autorun if pid in known)

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
        self.store_action = menu.addAction("Store AI results to archive", self.store_results)
        self._toggle_anchor = menu.addSeparator()
        menu.addAction("Show findings panel", lambda: (self.dock.show(), self.dock.raise_()))

    def _toggle_for(self, plugin: Plugin) -> QAction:
        existing = self.results.get(plugin.id)
        if existing is not None:
            return existing.toggle
        a = QAction(f"Show {plugin.manifest.title} results", self)
        a.setCheckable(True)
        a.toggled.connect(lambda on, pid=plugin.id: self.set_visible(pid, on))
        self.menu.insertAction(self._toggle_anchor, a)
        return a

    # -- running -------------------------------------------------------------------------------------------
    def run(self, plugin: Plugin, volume: Volume | None = None) -> TaskHandle | None:
        """Run ``plugin`` on ``volume`` (default: the active viewport's) in the background."""
        if volume is None:
            vp = self.window.viewer.active_slice_viewport()
            volume = None if vp is None else vp.volume
        if volume is None:
            self.window.show_status("AI: open a series first")
            return None
        if self.busy:
            self.window.show_status("AI: a model is already running")
            return None
        from workstation.ai.runner import RunOptions, run_plugin

        options = self.run_options()

        def work(progress, cancel) -> AiResult:
            return run_plugin(plugin, volume, options, progress=progress, cancel=cancel)

        def setup(handle: TaskHandle) -> None:
            self.task = handle
            self._set_busy(True, f"{plugin.manifest.title}: starting")
            handle.done.connect(self._run_finished)

        self.window.show_status(f"AI: running {plugin.manifest.title} on the series")
        return self.runner.submit(f"ai {plugin.id}", work, setup=setup,
                                  on_progress=self._on_progress,
                                  on_done=lambda result: self.show_result(plugin, result, volume),
                                  on_failed=lambda msg: self.window._warn(f"{plugin.manifest.title} did not run", msg))

    def run_options(self) -> RunOptions:
        """The options a run gets: those given at construction, else the environment's with the
        ``ai_threads`` setting as thread count (a non-zero ``WORKSTATION_AI_THREADS`` wins)."""
        from workstation.ai.runner import RunOptions

        if self.options is not None:
            return self.options
        options = RunOptions.from_env()
        return options if options.threads or not self.threads else replace(options, threads=self.threads)

    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.is_done

    def _run_finished(self) -> None:
        self._set_busy(False)
        self._start_queued()

    def volume_opened(self, volume: Volume, body_part: str = "") -> None:
        """A series was opened: queue the auto-run plugins that take it (once per plugin and series)."""
        series = volume.info.series_instance_uid or f"volume-{id(volume)}"
        for pid in self.autorun:
            plugin = self.registry.get(pid)
            if (pid, series) in self._autorun_seen or not matches_input(plugin, volume, body_part):
                continue
            self._autorun_seen.add((pid, series))
            self._queue.append((plugin, volume))
            self.window.show_status(f"AI: {plugin.manifest.title} runs automatically on this series")
        self._start_queued()

    def _start_queued(self) -> None:
        if self._queue and not self.busy:
            plugin, volume = self._queue.pop(0)
            self.run(plugin, volume)

    def cancel(self) -> None:
        self._queue.clear()
        if self.busy:
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
        self.results[plugin.id] = _Shown(result, volume, title, toggle, plugin, labelmap=result.labelmap)
        toggle.blockSignals(True)
        toggle.setChecked(True)
        toggle.blockSignals(False)
        if result.labelmap is not None:
            self._outline_action_for(plugin)
        self.panel.clear_model(result.plugin_id)
        self.panel.label_choices[result.plugin_id] = [spec.name for spec in plugin.manifest.labels]
        self.panel.add_findings([_titled(f, plugin) for f in result.findings], volume, title)
        if result.class_scores:
            self.panel.set_classification(result.plugin_id, title, result.class_scores)
        self.dock.show()
        self.dock.raise_()  # in front of the Annotate tab it shares the right side with
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

    def _outline_action_for(self, plugin: Plugin) -> QAction:
        a = self.outline_actions.get(plugin.id)
        if a is None:
            a = self.outline_actions[plugin.id] = QAction(f"Outline {plugin.manifest.title} labels", self)
            a.setCheckable(True)
            a.setChecked(self.outlined.get(plugin.id, False))
            a.toggled.connect(lambda on, pid=plugin.id: self.set_outline(pid, on))
            self.menu.insertAction(self._toggle_anchor, a)
        return a

    def set_outline(self, plugin_id: str, on: bool) -> None:
        """Draw the model's label map as outlines (True) or filled (False) in every 2D view."""
        self.outlined[plugin_id] = bool(on)
        action = self.outline_actions.get(plugin_id)
        if action is not None and action.isChecked() != bool(on):
            action.setChecked(bool(on))
        self.sync()

    def set_opacity(self, opacity: float) -> None:
        """The opacity of the label and heatmap overlays in every 2D view (nothing else is redrawn: slider path)."""
        self.opacity = float(opacity)
        for vp in self.slice_viewports():
            layers = [vp.view.labels, self._heatmaps.get(vp.view)]
            for layer in (layer for layer in layers if layer is not None):
                layer.set_opacity(self.opacity)
            vp.refresh()

    def current_labelmap(self, plugin_id: str) -> LabelMap | None:
        """The model's label map as the radiologist left it (edited segments are SEMIAUTOMATIC)."""
        shown = self.results.get(plugin_id)
        return None if shown is None else shown.labelmap

    def report_findings(self) -> list[Finding]:
        """Every finding with its decision, deleted ones as rejected: what the SR records."""
        return self.panel.report_findings()

    def store_results(self) -> TaskHandle | None:
        """Write the shown results (SEG + SR with the decisions) and queue them for the series' archive."""
        return self.store.store()

    def _on_decided(self, finding: Finding) -> None:
        shown = self._shown_by_model(finding.provenance.model_id)
        if (finding.status is Status.EDITED and shown is not None and shown.labelmap is not None
                and finding.kind is FindingKind.REGION and finding.segment_number is not None):
            same_segment = [f for f in self.panel.findings if f.provenance.model_id == finding.provenance.model_id
                            and f.segment_number == finding.segment_number]
            rename = finding.label if len(same_segment) == 1 else None
            shown.labelmap = edited_segment(shown.labelmap, finding.segment_number, rename)
        self.sync()

    def _shown_by_model(self, model_id: str) -> _Shown | None:
        """The shown result whose findings carry ``model_id`` (the plugin id for every real run)."""
        return next((s for s in self.results.values() if s.result.plugin_id == model_id), None)

    # -- drawing -------------------------------------------------------------------------------------------
    def slice_viewports(self) -> list:
        viewer = self.window.viewer
        return [*viewer.viewports, *viewer.mpr.slice_viewports()]

    def sync(self) -> None:
        """Give each view the visible results of the volume it shows (the newest run wins), or none."""
        for vp in self.slice_viewports():
            view = vp.view
            shown = [s for s in self.results.values() if s.visible and _same_volume(s.volume, view.volume)]
            self._sync_labels(view, shown)
            self._sync_detections(view, shown)
            self._sync_heatmap(view, shown)
            vp.refresh()
        self._sync_3d()

    def _sync_labels(self, view, shown: list[_Shown]) -> None:
        owners = [s for s in shown if s.labelmap is not None]
        labelmap = owners[-1].labelmap if owners else None
        if labelmap is None and view.labels is None:
            return
        current = None if view.labels is None else view.labels.labelmap
        if labelmap is not current:
            view.set_labelmap(labelmap)
        view.labels.set_opacity(self.opacity)
        outline = bool(owners) and self.outlined.get(owners[-1].plugin.id, False)
        if view.labels.outline != outline:
            view.labels.set_outline(outline)

    def _detection_items(self, shown: list[_Shown]) -> list[Drawn]:
        models = {s.result.plugin_id: s for s in shown}
        items = []
        for f in self.panel.findings:
            s = models.get(f.provenance.model_id)
            if s is None or f.kind not in (FindingKind.BOX, FindingKind.POINT):
                continue
            items.append(Drawn(f, _colour(f, s.plugin), _box_text(f)))
        return items

    def _sync_detections(self, view, shown: list[_Shown]) -> None:
        items = self._detection_items(shown)
        layer = self._detections.get(view)
        if layer is None and not items:
            return
        if layer is None:
            layer = self._detections[view] = DetectionsLayer(view)
        used = [s.title for s in shown if any(d.finding.provenance.model_id == s.result.plugin_id for d in items)]
        layer.set_items(items, "AI-generated: " + ", ".join(used) if used else "")

    def _sync_heatmap(self, view, shown: list[_Shown]) -> None:
        maps = [h for s in shown for h in s.result.heatmaps]
        layer = self._heatmaps.get(view)
        if layer is None and not maps:
            return
        if layer is None:
            layer = self._heatmaps[view] = HeatmapLayer(view.renderer)
            view.add_layer(layer.slice)
        heatmap = maps[-1] if maps else None
        if heatmap is not layer.heatmap:
            layer.set_heatmap(heatmap)
        layer.set_opacity(self.opacity)

    def _sync_3d(self) -> None:
        pane = self.window.viewer.mpr.volume_pane
        view = pane.view
        changed = False
        for pid in [k for k in view.label_surfaces if k not in self.results]:
            view.set_label_surfaces(pid, None)
            changed = True
        for pid, s in self.results.items():
            if s.labelmap is None:
                continue
            on = s.visible and _same_volume(s.volume, view.volume)
            if on or pid in view.label_surfaces:
                view.set_label_surfaces(pid, s.labelmap, on)
                changed = True
        shown = [s for s in self.results.values() if s.visible and _same_volume(s.volume, view.volume)]
        items = self._detection_items(shown)
        if items or view.detections is not None:
            view.set_detections(items)
            changed = True
        heat = [(h, s.plugin.manifest.output.threshold) for s in shown for h in s.result.heatmaps]
        if heat or view.heatmap_surface is not None:
            view.set_heatmap_surface(*(heat[-1] if heat else (None,)))
            changed = True
        if changed:
            pane.canvas.request_render()

    def detections_layer(self, view) -> DetectionsLayer | None:
        return self._detections.get(view)

    def heatmap_layer(self, view) -> HeatmapLayer | None:
        return self._heatmaps.get(view)

    def jump_to(self, finding: Finding) -> None:
        """Show the finding's centroid in the middle of the active view (every plane, in MPR), on the slice
        of the grid nearest to it."""
        centroid = finding.centroid_mm
        viewer = self.window.viewer
        in_mpr = viewer.mpr.isVisible() and viewer.mpr.volume is not None
        active = viewer.active_slice_viewport()
        volume = viewer.mpr.volume if in_mpr else getattr(active, "volume", None)
        point = centroid if volume is None else volume.nearest_voxel_lps(centroid)
        if in_mpr:
            viewer.mpr.set_point(point)
            targets = viewer.mpr.slice_viewports()
        else:
            targets = [] if volume is None else [active]
        for vp in targets:
            vp.view.center_on(point)
            vp.refresh()
        self.window.show_status(f"{finding.label}: centroid at ({centroid[0]:.1f}, {centroid[1]:.1f}, "
                                f"{centroid[2]:.1f}) mm")


def edited_segment(labelmap: LabelMap, number: int, new_name: str | None = None) -> LabelMap:
    """The label map with segment ``number`` marked SEMIAUTOMATIC (a model's output a person changed)."""
    segments = []
    for s in labelmap.segments:
        if s.number == number and s.algorithm is not None:
            s = replace(s, algorithm=replace(s.algorithm, type=AlgorithmType.SEMIAUTOMATIC),
                        name=new_name or s.name)
        segments.append(s)
    return LabelMap(labelmap.labels, labelmap.affine, tuple(segments), labelmap.frame_of_reference_uid,
                    labelmap.source_series_uid)


def _colour(finding: Finding, plugin: Plugin) -> tuple[float, float, float]:
    if finding.status is Status.REJECTED:
        return _REJECTED_COLOUR
    for spec in plugin.manifest.labels:
        if spec.value == finding.segment_number:
            r, g, b = spec.colour
            return (r / 255.0, g / 255.0, b / 255.0)
    return _DEFAULT_COLOUR


def _box_text(finding: Finding) -> str:
    status = "" if finding.status is Status.PENDING else f" [{finding.status.value.lower()}]"
    return f"{finding.label} {finding.score:.2f}{status}"


def _same_volume(a: Volume | None, b: Volume | None) -> bool:
    if a is None or b is None:
        return False
    if a is b:
        return True
    uid_a, uid_b = a.info.series_instance_uid, b.info.series_instance_uid
    return bool(uid_a) and uid_a == uid_b and a.shape == b.shape


def _titled(finding: Finding, plugin: Plugin) -> Finding:
    """The finding with the model's title in its provenance (for the panel's labels)."""
    if finding.provenance.model_title:
        return finding
    return replace(finding, provenance=replace(finding.provenance, model_title=plugin.manifest.title))

"""Store AI results to the archive from the window: SEG + SR with the radiologist's decisions, via the sync
worker into the local archive, read back into the same objects; a second store is the next SR revision."""

from __future__ import annotations

import getpass
import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from tests.gui.conftest import open_first_series
from workstation.ai.manifest import load_manifest
from workstation.ai.registry import Plugin
from workstation.ai.runner import RunOptions
from workstation.model.finding import Status
from workstation.model.labelmap import AlgorithmType

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

_MANIFEST = """schema = 1
id = "tiny-ct"
version = "0.2"
title = "Tiny CT regions"
model = "model.onnx"
[input]
tensor = "input"
modalities = ["CT"]
spacing_mm = [8.0, 8.0, 8.0]
size = [48, 48, 48]
[input.intensity]
normalise = "zscore"
[output]
tensor = "output"
[[labels]]
value = 1
name = "Dense"
colour = [255, 0, 0]
category = { code = "85756007", scheme = "SCT", meaning = "Tissue" }
type = { code = "85756007", scheme = "SCT", meaning = "Tissue" }
[[labels]]
value = 2
name = "Air"
colour = [0, 0, 255]
category = { code = "85756007", scheme = "SCT", meaning = "Tissue" }
type = { code = "85756007", scheme = "SCT", meaning = "Tissue" }
"""


def tiny_ct_plugin(folder) -> Plugin:
    """A real ONNX model scoring (1, x, -x) on the z-scored CT: label 1 (Dense) where x > 1, 2 (Air) where x < -1."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    root = folder / "tiny-ct"
    root.mkdir(parents=True)
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 48, 48, 48])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 48, 48, 48])
    consts = [numpy_helper.from_array(np.array(v, np.float32), n) for v, n in ((0.0, "zero"), (1.0, "one"))]
    nodes = [helper.make_node("Mul", ["input", "zero"], ["zeros"]),
             helper.make_node("Add", ["zeros", "one"], ["background"]),
             helper.make_node("Neg", ["input"], ["neg"]),
             helper.make_node("Concat", ["background", "input", "neg"], ["output"], axis=1)]
    graph = helper.make_graph(nodes, "tiny", [x], [y], initializer=consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(root / "model.onnx"))
    (root / "plugin.toml").write_text(_MANIFEST)
    return Plugin(load_manifest(root / "plugin.toml"), root, "folder")


def _dciodvfy_errors(path) -> list[str]:
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


def _sent_files(window, qtbot, n: int):
    """Wait for the sync worker to send ``n`` items; their files as now in the local archive, by SOP UID."""
    def all_sent():
        items = window.sync.items()
        assert len(items) == n and {i.status.value for i in items} == {"sent"}, [(i.status, i.last_error)
                                                                              for i in items]
    qtbot.waitUntil(all_sent, timeout=30000)
    return {i.sop_instance_uid: i.archive for i in window.sync.items()}


def _archived(window, study_uid: str, modality: str) -> list:
    local = window.archive.local
    series = [s for s in local.find_series(study_uid) if s.modality == modality]
    return [pydicom.dcmread(p) for s in series for p in local.fetch_series(s.series_instance_uid)]


def test_store_ai_results_seg_and_sr_reach_the_archive_and_read_back(main_window, qtbot, tmp_path):
    from workstation.dicom.seg import labelmap_onto_grid, read_seg
    from workstation.dicom.sr.decode import sr_to_findings

    plugin = tiny_ct_plugin(tmp_path)
    vp = open_first_series(main_window)
    volume = vp.volume
    ai = main_window.ai
    ai.options = RunOptions(threads=1, search_path=())
    handle = ai.run(plugin)
    assert handle is not None and handle.error is None, handle and handle.error
    panel = ai.panel
    assert len(panel.findings) >= 2, "the tiny model should find dense and air regions"
    panel.select(0)
    panel.accept_button.click()
    panel.select(1)
    panel.reject_button.click()
    decided = {f.uid: f for f in panel.findings[:2]}

    assert ai.store_action.text() == "Store AI results to archive"
    panel.store_button.click()  # synchronous task in tests: written and queued; the worker thread sends
    first = ai.store.stored[plugin.id]
    assert first.archive == "Local" and first.seg_path.exists() and first.sr_path.exists()
    assert not list(first.sr_path.parent.glob("*.partial"))
    _sent_files(main_window, qtbot, 2)

    study = volume.info.study_instance_uid
    segs, srs = _archived(main_window, study, "SEG"), _archived(main_window, study, "SR")
    assert len(segs) == 1 and len(srs) == 1
    seg_ds, sr_ds = segs[0], srs[0]
    assert seg_ds.SOPInstanceUID == pydicom.dcmread(first.seg_path).SOPInstanceUID
    assert seg_ds.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"
    stored_seg = tmp_path / "back.seg.dcm"
    seg_ds.save_as(stored_seg, enforce_file_format=True)
    back = read_seg(stored_seg)
    shown = ai.results[plugin.id].labelmap
    assert back.segments == shown.segments
    assert np.array_equal(labelmap_onto_grid(back, volume.shape, volume.affine), shown.labels)

    findings, _ = sr_to_findings(sr_ds)
    by_uid = {f.uid: f for f in findings}
    assert set(by_uid) == {f.uid for f in panel.report_findings()}
    for uid, f in decided.items():
        again = by_uid[uid]
        assert again.status is f.status and again.decision.by == getpass.getuser() == f.decision.by
        assert abs((again.decision.at - f.decision.at).total_seconds()) < 1e-3
        assert again.label == f.label and again.provenance.model_id == "tiny-ct"
    assert {by_uid[u].status for u in decided} == {Status.ACCEPTED, Status.REJECTED}
    assert all(f.status is Status.PENDING for u, f in by_uid.items() if u not in decided)
    assert sr_ds.ContentSequence  # the model as the observing device
    devices = [str(i.TextValue) for i in _walk(sr_ds) if getattr(i, "ValueType", "") == "TEXT"
               and i.ConceptNameCodeSequence[0].CodeValue == "121013"]  # Device Observer Name
    assert devices == ["Tiny CT regions"]

    if shutil.which("dciodvfy"):
        assert _dciodvfy_errors(first.seg_path) == [] and _dciodvfy_errors(first.sr_path) == []

    # more decisions, an edit of the region: the next store is a new SR revision and a SEMIAUTOMATIC SEG
    panel.edit(2 if len(panel.findings) > 2 else 0, label="Bone")
    panel.store_button.click()
    second = ai.store.stored[plugin.id]
    assert second.revision == 2 and second.sr_path != first.sr_path
    _sent_files(main_window, qtbot, 4)
    srs = sorted(_archived(main_window, study, "SR"), key=lambda ds: int(ds.InstanceNumber))
    assert len(srs) == 2 and srs[1].SeriesInstanceUID == srs[0].SeriesInstanceUID
    pred = srs[1].PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert pred.ReferencedSOPInstanceUID == srs[0].SOPInstanceUID
    edited = [f for f in sr_to_findings(srs[1])[0] if f.status is Status.EDITED]
    assert [f.label for f in edited] == ["Bone"] and edited[0].decision.by == getpass.getuser()
    segs = sorted(_archived(main_window, study, "SEG"), key=lambda ds: int(ds.InstanceNumber))
    assert len(segs) == 2 and segs[1].SeriesInstanceUID == segs[0].SeriesInstanceUID
    assert AlgorithmType.SEMIAUTOMATIC.value in {s.SegmentAlgorithmType for s in segs[1].SegmentSequence}
    if shutil.which("dciodvfy"):
        assert _dciodvfy_errors(second.sr_path) == [] and _dciodvfy_errors(second.seg_path) == []


def test_a_failed_store_leaves_nothing_written_or_queued(main_window, tmp_path):
    plugin = tiny_ct_plugin(tmp_path)
    open_first_series(main_window)
    ai = main_window.ai
    ai.options = RunOptions(threads=1, search_path=())
    ai.run(plugin)
    out = ai.store.results_dir
    out.mkdir(parents=True, exist_ok=True)
    blocker = main_window.sync.folder / "items" / "Local"  # a file where the outbox keeps Local's copies
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("in the way")
    warnings = []
    main_window._warn = lambda title, msg: warnings.append((title, msg))
    ai.store_results()
    assert warnings and warnings[0][0] == "AI results not stored"
    assert list(out.iterdir()) == [] and main_window.sync.items() == []
    assert plugin.id not in ai.store.stored


def _walk(ds):
    for item in getattr(ds, "ContentSequence", []):
        yield item
        yield from _walk(item)

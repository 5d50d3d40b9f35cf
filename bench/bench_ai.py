"""AI plugins end to end on the 7 T MR head against a bare onnxruntime session.

For each real model (brainchop-tissue when its model file is found, brain-extraction always):

* **workstation**: the runner's pipeline with the model(s) already open (as the app keeps them), split
  into pre-processing, inference, post-processing and mapping back to the source grid;
* **bare**: ``InferenceSession.run`` alone on the tensor(s) the pipeline feeds the model, prepared
  beforehand and loaded from ``.npy`` -- the least any integration can cost.  It is timed twice: on the
  workstation's own sessions, interleaved with the pipeline runs (the ratio uses this one: on a shared
  machine both then see the same load), and in a fresh interpreter of its own, for its peak RSS.

Each side reports the best of ``--runs`` passes (the first warms onnxruntime up); peak RSS is
``ru_maxrss`` of each side's own interpreter.  Goal: workstation end to end <= 1.3 x bare.
Usage: ``python bench/bench_ai.py [--runs N] [--threads T]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import case_dir, print_table, run_json  # noqa: E402

CASE = "mr-head-t1-7t"
PLUGINS = ("brainchop-tissue", "brain-extraction")
GOAL = 1.3


def _volume():
    from workstation.dicom.series import examine, load_volume

    plans, _ = examine([case_dir(CASE)])
    return load_volume(plans[0])


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _model_inputs(plugin, volume) -> dict[str, object]:
    """The exact tensors the pipeline gives each model file (computed outside any timing)."""
    import numpy as np

    from workstation.ai import grid

    m = plugin.manifest
    if not m.hooks:
        data, _ = grid.to_model_grid(volume, m.input)
        return {m.model: grid.normalise(data, m.input.intensity)[None, None]}
    from workstation.ai.hooks import HookContext, load_hooks, open_models
    from workstation.model.tasks import CancelToken

    seen: dict[str, object] = {}

    class Recorder(HookContext):  # the real pipeline, keeping what each model was given
        def predict(self, name, x):
            seen[name] = np.array(x, dtype=np.float32)
            return super().predict(name, x)

    load_hooks(plugin).infer(volume, Recorder(m, open_models(plugin, ()), CancelToken(), lambda p: None))
    return seen


def worker_prepare(plugin_id: str, folder: Path) -> dict:
    import numpy as np

    from workstation.ai.registry import discover, model_search_path, resolve_model

    plugin = discover().get(plugin_id)
    inputs = _model_inputs(plugin, _volume())
    files = {}
    for name, tensor in inputs.items():
        np.save(folder / f"{name}.npy", np.ascontiguousarray(tensor, dtype=np.float32))
        files[name] = str(resolve_model(plugin, model_search_path(), name))
    return {"models": files}


def worker_bare(models: dict[str, str], folder: Path, runs: int, threads: int) -> dict:
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    sessions = {name: ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
                for name, path in models.items()}
    tensors = {name: np.load(folder / f"{name}.npy") for name in models}
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        for name, session in sessions.items():
            session.run(None, {session.get_inputs()[0].name: tensors[name]})
        best = min(best, time.perf_counter() - start)
    return {"inference": best, "rss_mb": _rss_mb()}


def worker_workstation(plugin_id: str, folder: Path, runs: int, threads: int) -> dict:
    import numpy as np

    from workstation.ai.hooks import open_models, run_with_hooks
    from workstation.ai.registry import discover, model_search_path
    from workstation.ai.runner import RunOptions, run_model

    plugin = discover().get(plugin_id)
    volume = _volume()
    models = open_models(plugin, model_search_path(), threads=threads, allow_accelerators=False)
    tensors = {name: np.load(folder / f"{name}.npy") for name in models}
    best: dict[str, float] = {}
    bare = float("inf")
    for _ in range(runs):
        # the bare call on the same sessions, interleaved with the pipeline: both see the same machine load
        start = time.perf_counter()
        for name, model in models.items():
            model.session.run([model.output_name], {model.input_name: tensors[name]})
        bare = min(bare, time.perf_counter() - start)
        if plugin.manifest.hooks:
            result = run_with_hooks(plugin, models, volume)
        else:
            result = run_model(models[plugin.manifest.model], plugin.manifest, volume, RunOptions(threads=threads))
        t = result.timings_s
        # the findings step (connected regions for the findings list) counts as post-processing
        t = {"preprocess": t["preprocess"], "inference": t["inference"],
             "postprocess": t["postprocess"] + t.get("findings", 0.0), "map_back": t["map_back"], "total": t["total"]}
        if not best or t["total"] < best["total"]:
            best = t
    return {**best, "bare_interleaved": bare, "rss_mb": _rss_mb(), "source_mb": volume.voxels.nbytes / 2**20,
            "segments": {s.name: round(result.labelmap.volume_mm3(s.number) / 1000.0, 1)
                         for s in result.labelmap.segments}}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--worker", nargs="+")
    args = parser.parse_args()
    if args.worker:
        kind, *rest = args.worker
        if kind == "prepare":
            out = worker_prepare(rest[0], Path(rest[1]))
        elif kind == "bare":
            out = worker_bare(json.loads(rest[0]), Path(rest[1]), args.runs, args.threads)
        else:
            out = worker_workstation(rest[0], Path(rest[1]), args.runs, args.threads)
        print(json.dumps(out))
        return 0
    if case_dir(CASE) is None:
        print(f"bench_ai: shared data {CASE} is missing; skipped")
        return 0
    from workstation.ai.registry import ModelNotFound, discover, model_search_path, resolve_model

    rows = []
    me = str(Path(__file__).resolve())
    common = ["--runs", str(args.runs), "--threads", str(args.threads)]
    for plugin_id in PLUGINS:
        plugin = discover().get(plugin_id)
        try:
            resolve_model(plugin, model_search_path())
        except ModelNotFound:
            print(f"bench_ai: {plugin_id}: model file not found; skipped")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            prep = run_json([me, *common, "--worker", "prepare", plugin_id, tmp], timeout=1200)
            bare = run_json([me, *common, "--worker", "bare", json.dumps(prep["models"]), tmp], timeout=1200)
            ws = run_json([me, *common, "--worker", "workstation", plugin_id, tmp], timeout=1200)
        ratio = ws["total"] / ws["bare_interleaved"]
        rows.append([plugin_id, ws["preprocess"], ws["inference"], ws["postprocess"], ws["map_back"], ws["total"],
                     ws["bare_interleaved"], bare["inference"], f"{ratio:.2f}x", "yes" if ratio <= GOAL else "NO",
                     ws["rss_mb"], bare["rss_mb"], ws["source_mb"]])
        print(f"{plugin_id}: {ws['segments']}", flush=True)
    print_table(f"AI on {CASE} (seconds, best of {args.runs}; goal end-to-end <= {GOAL}x bare onnxruntime)",
                ["plugin", "pre", "inference", "post", "map back", "end-to-end", "bare ort", "bare ort (own process)",
                 "ratio", "goal", "peak RSS MB", "bare RSS MB", "source MB"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

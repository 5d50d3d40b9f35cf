"""The AI subcommands of the command line: ``plugins list [--json]`` and ``ai run PLUGIN TARGET --out DIR``.

:mod:`workstation.cli` registers them through :func:`add_parsers` and :func:`commands`; it passes in how
to fetch an archived series, so this module never imports the archive.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from workstation.ai.registry import ModelNotFound, discover, model_search_path, resolve_model

FetchPaths = Callable[[object, str], list]  # (settings, series UID) -> files of that archived series


class AiCommandError(Exception):
    """One line for the user (``workstation.cli`` prints ``reason``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = ""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plugins", help="list the installed AI plugins")
    psub = p.add_subparsers(dest="plugins_command", metavar="ACTION", required=True)
    lp = psub.add_parser("list", help="list plugins, their versions and whether their model file is found")
    lp.add_argument("--json", action="store_true", help="print JSON")
    p = sub.add_parser("ai", help="run AI plugins")
    asub = p.add_subparsers(dest="ai_command", metavar="ACTION", required=True)
    rp = asub.add_parser("run", help="run a plugin on a series and write its results as DICOM")
    rp.add_argument("plugin", metavar="PLUGIN")
    rp.add_argument("target", metavar="PATH_OR_SERIES_UID")
    rp.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the DICOM SEG")
    rp.add_argument("--threads", type=int, default=0, help="inference threads (default: all cores)")
    rp.add_argument("--cpu", action="store_true", help="use the CPU even when an accelerator is present")
    rp.add_argument("--series", metavar="UID", help="which series when the input holds several (default: first)")


def commands(fetch_paths: FetchPaths) -> dict[str, Callable]:
    return {"plugins": cmd_plugins, "ai": lambda settings, args: cmd_ai_run(settings, args, fetch_paths)}


def cmd_plugins(settings, args: argparse.Namespace) -> int:
    registry = discover()
    search = model_search_path()
    rows = []
    for p in registry.plugins:
        try:
            model, problem = str(resolve_model(p, search)), ""
        except ModelNotFound as exc:
            model, problem = "", str(exc)
        m = p.manifest
        rows.append({"id": m.id, "version": m.version, "title": m.title, "output": m.output.kind.value,
                     "modalities": list(m.input.modalities), "licence": m.licence, "intended_use": m.intended_use,
                     "folder": str(p.folder), "origin": p.origin, "model": model, "problem": problem})
    problems = [{"where": w, "problem": why} for w, why in registry.problems]
    if args.json:
        print(json.dumps({"plugins": rows, "problems": problems}, indent=2))
        return 0
    for r in rows:
        state = "ready" if r["model"] else "MODEL MISSING"
        print(f"{r['id']}  {r['version']}  {'/'.join(r['modalities'])}  {r['output']}  {state}  {r['title']}")
        if r["problem"]:
            print(f"  {r['problem']}")
    for pr in problems:
        print(f"problem: {pr['where']}: {pr['problem']}")
    return 0


def cmd_ai_run(settings, args: argparse.Namespace, fetch_paths: FetchPaths) -> int:
    try:
        plugin = discover().get(args.plugin)
    except KeyError as exc:
        raise AiCommandError(str(exc).strip("'\"")) from None
    # heavy imports (onnxruntime, SimpleITK) only when a model really runs: the CLI starts fast
    from workstation.ai.inference import ModelLoadError
    from workstation.ai.manifest import ManifestError
    from workstation.ai.runner import MemoryBudgetExceeded, RunOptions, WrongInput, run_plugin
    from workstation.model.tasks import Cancelled

    plan, volume = _load(settings, args.target, args.series, fetch_paths)
    options = RunOptions(threads=args.threads, allow_accelerators=not args.cpu)
    try:
        result = run_plugin(plugin, volume, options)
    except (ManifestError, ModelNotFound, ModelLoadError, WrongInput, MemoryBudgetExceeded) as exc:
        raise AiCommandError(str(exc)) from None
    except Cancelled:
        raise AiCommandError("cancelled; nothing was written") from None
    out = _write_seg(result, plan, args.out)
    _print_summary(result, out)
    return 0


def _load(settings, target: str, which: str | None, fetch_paths: FetchPaths):
    from workstation.dicom.series import examine, load_volume

    path = Path(target)
    paths = [path] if path.exists() else fetch_paths(settings, target)
    plans, skipped = examine(paths)
    if not plans:
        raise AiCommandError(f"{target}: no loadable image series ({len(skipped)} files skipped)")
    plan = next((p for p in plans if p.series_instance_uid == which), None) if which else plans[0]
    if plan is None:
        raise AiCommandError(f"--series {which}: not in {target}")
    return plan, load_volume(plan)


def _write_seg(result, plan, out_dir: Path) -> Path:
    from workstation.dicom.seg import SegError, labelmap_to_seg, read_source_headers

    try:
        ds = labelmap_to_seg(result.labelmap, read_source_headers(plan.files))
    except SegError as exc:
        raise AiCommandError(f"cannot encode the result as DICOM SEG: {exc}") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{result.plugin_id}-{ds.SeriesInstanceUID}.seg.dcm"
    partial = final.with_suffix(".partial")
    ds.save_as(partial, enforce_file_format=True)
    partial.replace(final)  # never a half-written file under the final name
    return final


def _print_summary(result, out: Path) -> None:
    lm = result.labelmap
    print(f"{result.plugin_id} {result.plugin_version} (AI-generated) on {', '.join(result.providers)}")
    for s in lm.segments:
        print(f"  segment {s.number} {s.name}: {lm.volume_mm3(s.number) / 1000.0:.1f} mL")
    for f in result.findings:
        x, y, z = f.centroid_mm
        print(f"  finding {f.label}: score {f.score:.2f}, volume {f.volume_mm3 / 1000.0:.1f} mL, "
              f"centroid ({x:.1f}, {y:.1f}, {z:.1f}) mm")
    t = result.timings_s
    print("  time: " + ", ".join(f"{k} {v:.2f} s" for k, v in t.items()))
    print(out)

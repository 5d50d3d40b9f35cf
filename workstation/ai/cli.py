"""The AI subcommands of the command line: ``plugins list [--json]`` and
``ai run PLUGIN TARGET --out DIR [--archive NAME]``.

:mod:`workstation.cli` registers them through :func:`add_parsers` and :func:`commands`; it passes in how
to fetch an archived series and how to store results to an archive, so this module never imports the
archive.  Results (DICOM SEG, and an SR TID 1500 of the findings) are written all or nothing: each goes
to a temporary name first and only when every one is complete are they renamed into place.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from workstation.ai.registry import BUILTIN_PLUGINS, ModelNotFound, discover, model_search_path, resolve_model

FetchPaths = Callable[..., list]  # (settings, series UID, archive name or None) -> files of that archived series
#: (settings, archive name) -> a function storing result files there and returning one line for the user;
#: called before the model runs, so a bad archive name fails fast
OpenStore = Callable[[object, str], Callable[[list[Path]], str]]
_FROM_RESULT = object()  # write_results: the result's own label map


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
    rp.add_argument("--threads", type=int, default=None, metavar="N",
                    help="inference threads (default: the ai_threads setting; 0 = all cores)")
    rp.add_argument("--cpu", action="store_true", help="use the CPU even when an accelerator is present")
    rp.add_argument("--memory-gb", type=float, default=8.0, metavar="GB",
                    help="refuse a run that would need more memory than this (default 8)")
    rp.add_argument("--series", metavar="UID", help="which series when the input holds several (default: first)")
    rp.add_argument("--archive", metavar="NAME",
                    help="fetch a series UID from this archive and store the SEG and SR there (through the outbox)")


def commands(fetch_paths: FetchPaths, open_store: OpenStore | None = None) -> dict[str, Callable]:
    return {"plugins": cmd_plugins, "ai": lambda settings, args: cmd_ai_run(settings, args, fetch_paths, open_store)}


def _registry(settings):
    """The built-in plugins and those in the settings' ``plugin_dirs`` (site plugins), as the app sees them."""
    return discover((BUILTIN_PLUGINS, *getattr(settings, "plugin_dirs", ())))


def cmd_plugins(settings, args: argparse.Namespace) -> int:
    registry = _registry(settings)
    search = model_search_path()
    rows = []
    for p in registry.plugins:
        try:
            model, problem = str(resolve_model(p, search)), ""
            for extra in p.manifest.extra_models:  # a hooks plugin needs every one of its model files
                resolve_model(p, search, extra)
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


def run_options(settings, args: argparse.Namespace):
    """The RunOptions of ``ai run``: ``--threads`` or else the ``ai_threads`` setting, ``--cpu``, ``--memory-gb``."""
    from workstation.ai.runner import RunOptions

    threads = settings.ai_threads if args.threads is None else args.threads
    if threads < 0:
        raise AiCommandError(f"--threads must be 0 (all cores) or more, got {threads}")
    return RunOptions(threads=threads, allow_accelerators=not args.cpu, memory_budget_bytes=int(args.memory_gb * 2**30))


def cmd_ai_run(settings, args: argparse.Namespace, fetch_paths: FetchPaths, open_store: OpenStore | None = None) -> int:
    try:
        plugin = _registry(settings).get(args.plugin)
    except KeyError as exc:
        raise AiCommandError(str(exc).strip("'\"")) from None
    # heavy imports (onnxruntime, SimpleITK) only when a model really runs: the CLI starts fast
    from workstation.ai.hooks import HooksError, InputRefused
    from workstation.ai.inference import ModelLoadError
    from workstation.ai.manifest import ManifestError
    from workstation.ai.runner import MemoryBudgetExceeded, WrongInput, run_plugin
    from workstation.model.tasks import Cancelled

    archive = getattr(args, "archive", None)
    store = None
    if archive:
        if open_store is None:
            raise AiCommandError("--archive: storing results to an archive is not available in this command")
        store = open_store(settings, archive)
    options = run_options(settings, args)
    plan, volume = _load(settings, args.target, args.series, fetch_paths, archive)
    try:
        result = run_plugin(plugin, volume, options)
    except (ManifestError, ModelNotFound, ModelLoadError, WrongInput, MemoryBudgetExceeded, HooksError) as exc:
        raise AiCommandError(str(exc)) from None
    except InputRefused as exc:  # a hooks pipeline refusing the image (e.g. no brain found)
        raise AiCommandError(f"plugin {plugin.id!r}: {exc}") from None
    except Cancelled:
        raise AiCommandError("cancelled; nothing was written") from None
    written = write_results(result, plan, args.out)
    _print_summary(result, written)
    if store is not None:
        print(store(written))
    return 0


def _load(settings, target: str, which: str | None, fetch_paths: FetchPaths, archive: str | None = None):
    from workstation.dicom.series import examine, load_volume

    path = Path(target)
    if path.exists():
        paths = [path]
    else:
        paths = fetch_paths(settings, target, archive) if archive else fetch_paths(settings, target)
    plans, skipped = examine(paths)
    if not plans:
        raise AiCommandError(f"{target}: no loadable image series ({len(skipped)} files skipped)")
    plan = next((p for p in plans if p.series_instance_uid == which), None) if which else plans[0]
    if plan is None:
        raise AiCommandError(f"--series {which}: not in {target}")
    return plan, load_volume(plan)


def write_results(result, plan, out_dir: Path, *, headers=None, labelmap=_FROM_RESULT, findings=None,
                  previous_seg=None, previous_sr=None) -> list[Path]:
    """The SEG (and the SR of the findings, when there are any) in ``out_dir``: all of them or none.

    The window stores a reviewed result through this too: ``headers`` are the source images' headers
    (instead of reading ``plan.files``), ``labelmap`` the label map as edited (``None``: no SEG this time),
    ``findings`` those with the radiologist's decisions, and ``previous_seg`` / ``previous_sr`` the
    revision stored before (the new SR lists it in PredecessorDocumentsSequence, the new SEG joins its series).
    """
    from workstation.dicom.seg import SegError, labelmap_to_seg, read_source_headers
    from workstation.dicom.sr.encode import DeviceObserver, SrError, findings_to_sr
    headers = read_source_headers(plan.files) if headers is None else headers
    labelmap = result.labelmap if labelmap is _FROM_RESULT else labelmap
    findings = result.findings if findings is None else tuple(findings)
    datasets = []
    try:
        codes = None
        if labelmap is not None:  # detections, heatmaps and classes have no label map: the SR only
            datasets.append(("seg", labelmap_to_seg(labelmap, headers, predecessor=previous_seg)))
            codes = {s.name: s.type for s in labelmap.segments}
        elif result.labelmap is not None:
            codes = {s.name: s.type for s in result.labelmap.segments}
        if findings:
            observer = DeviceObserver.for_model(findings[0].provenance)
            datasets.append(("sr", findings_to_sr(findings, [], headers, observer=observer, label_codes=codes,
                                                  series_description=f"AI findings: {result.plugin_id}",
                                                  predecessor=previous_sr)))
    except (SegError, SrError) as exc:
        raise AiCommandError(f"cannot encode the result as DICOM: {exc}") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    finals = [out_dir / f"{result.plugin_id}-{ds.SOPInstanceUID}.{kind}.dcm" for kind, ds in datasets]
    partials = [f.with_name(f.name + ".partial") for f in finals]
    try:
        for (_, ds), partial in zip(datasets, partials):
            ds.save_as(partial, enforce_file_format=True)
        for partial, final in zip(partials, finals):
            partial.replace(final)  # every file complete before any gets its final name
    except BaseException:  # a full disk or Ctrl-C: leave nothing behind
        for path in partials + finals:
            path.unlink(missing_ok=True)
        raise
    return finals


def _print_summary(result, written: list[Path]) -> None:
    lm = result.labelmap
    print(f"{result.plugin_id} {result.plugin_version} (AI-generated) on {', '.join(result.providers)}")
    for s in lm.segments if lm is not None else ():
        print(f"  segment {s.number} {s.name}: {lm.volume_mm3(s.number) / 1000.0:.1f} mL")
    for label, p in result.class_scores:
        print(f"  class {label}: {p:.3f}")
    for f in result.findings:
        x, y, z = f.centroid_mm
        size = (f"volume {f.volume_mm3 / 1000.0:.1f} mL" if f.volume_mm3 else
                "size " + " x ".join(f"{d:.1f}" for d in f.size_mm) + " mm")
        print(f"  finding {f.label}: score {f.score:.2f}, {size}, centroid ({x:.1f}, {y:.1f}, {z:.1f}) mm")
    t = result.timings_s
    print("  time: " + ", ".join(f"{k} {v:.2f} s" for k, v in t.items()))
    for path in written:
        print(path)

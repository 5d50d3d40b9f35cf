"""Shared helpers for the benchmarks: where the data is, a table printer, subprocess timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("WORKSTATION_SHARED_DATA", ROOT.parent / "shared" / "data"))


def case_dir(name: str) -> Path | None:
    d = SHARED_DATA / name / "dicom"
    return d if d.is_dir() else None


def run_json(args: list[str], timeout: float = 600) -> dict:
    """Run a Python snippet/script in a fresh interpreter and parse the JSON it prints last."""
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"{args[:2]} failed: {out.stderr.strip()[-800:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def print_table(title: str, header: list[str], rows: list[list[object]]) -> None:
    cells = [header] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(header))]
    print(f"\n## {title}\n")
    print("| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells[1:]:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |")


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)

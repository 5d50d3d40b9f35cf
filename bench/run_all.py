"""Run every benchmark in bench/ and print their tables one after another."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

for name in ("bench_load", "bench_render", "bench_startup", "bench_archive", "bench_annotate", "bench_ai",
             "bench_labels"):
    path = HERE / f"{name}.py"
    if path.exists():
        print(f"\n# {name}")
        runpy.run_path(str(path), run_name="__main__")

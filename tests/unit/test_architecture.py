"""The dependency rules of ARCHITECTURE.md, enforced by import-linter contracts in pyproject.toml."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_linter_contracts_hold():
    exe = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(exe), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" in result.stdout.lower() or "kept" in result.stdout.lower()


def test_model_imports_nothing_heavy():
    code = (
        "import sys, workstation.model as m; "
        "bad = [n for n in ('PySide6', 'vtk', 'vtkmodules', 'pydicom', 'SimpleITK') if n in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == ""

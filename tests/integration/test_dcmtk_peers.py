"""Real DICOM peers: dcmtk transcodes real files, dcm2niix converts them, dciodvfy validates ours."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.shared_data import shared_case

series = pytest.importorskip("workstation.dicom.series")


def _need(tool: str) -> str:
    exe = shutil.which(tool)
    if exe is None:
        pytest.skip(f"{tool} is not installed (Debian package dcmtk / dicom3tools / dcm2niix)")
    return exe


def _first_files(n: int) -> list[Path]:
    files = sorted((shared_case("ct-chest-lidc-0001") / "dicom").iterdir())
    return files[40 : 40 + n]


@pytest.mark.parametrize(
    ("tool", "args", "what"),
    [
        ("dcmconv", ["+tb"], "explicit VR big endian"),
        ("dcmconv", ["+ti"], "implicit VR little endian"),
        ("dcmcjpeg", ["+e1"], "JPEG lossless SV1"),
        ("dcmcrle", [], "RLE lossless"),
    ],
)
def test_dcmtk_transcoded_series_decode_to_identical_voxels(tmp_path, tool, args, what):
    exe = _need(tool)
    src = _first_files(3)
    out = tmp_path / "out"
    out.mkdir()
    for f in src:
        subprocess.run([exe, *args, str(f), str(out / f.name)], check=True, capture_output=True)
    original = series.load_series(src)
    transcoded = series.load_series(sorted(out.iterdir()))
    assert len(original) == len(transcoded) == 1, what
    np.testing.assert_array_equal(original[0].voxels, transcoded[0].voxels)
    np.testing.assert_allclose(original[0].affine, transcoded[0].affine, atol=1e-6)


def test_geometry_agrees_with_dcm2niix(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    exe = _need("dcm2niix")
    folder = shared_case("ct-chest-lidc-0001") / "dicom"
    subprocess.run([exe, "-z", "n", "-b", "n", "-f", "vol", "-o", str(tmp_path), str(folder)], check=True, capture_output=True)
    img = sitk.ReadImage(str(tmp_path / "vol.nii"))
    (vol,) = series.load_series(sorted(folder.iterdir()))
    assert tuple(reversed(img.GetSize())) == vol.shape
    np.testing.assert_allclose(img.GetSpacing(), vol.spacing, atol=1e-3)
    # SimpleITK reports NIfTI geometry in LPS, like the workstation; dcm2niix may flip the row axis on
    # write, so compare the grid's corners as a set of physical points.
    k, j, i = vol.shape
    corners_ws = {tuple(np.round(vol.index_to_lps(np.array(c)), 1)) for c in
                  [(0, 0, 0), (i - 1, 0, 0), (0, j - 1, 0), (i - 1, j - 1, 0), (0, 0, k - 1), (i - 1, j - 1, k - 1)]}
    corners_nii = set()
    for c in [(0, 0, 0), (i - 1, 0, 0), (0, j - 1, 0), (i - 1, j - 1, 0), (0, 0, k - 1), (i - 1, j - 1, k - 1),
              (0, j - 1, k - 1), (i - 1, 0, k - 1)]:
        corners_nii.add(tuple(np.round(img.TransformContinuousIndexToPhysicalPoint([float(x) for x in c]), 1)))
    assert corners_ws <= corners_nii


INVESALIUS_CT = Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3")


@pytest.mark.parametrize("source", ["nrrd-mr", "inv3-ct"])
def test_imported_volume_files_pass_dciodvfy(tmp_path, source):
    exe = _need("dciodvfy")
    vi = pytest.importorskip("workstation.dicom.volume_import")
    if source == "nrrd-mr":
        path = shared_case("seg-ct-3slice-dcmqi") / "liver_seg.nrrd"
    else:
        if not INVESALIUS_CT.exists():
            pytest.skip("Debian package invesalius-examples is not installed")
        path = INVESALIUS_CT
    files = vi.volume_file_to_dicom(path, tmp_path / "dcm", patient_name="Test^Import", patient_id="IMP1")
    assert files
    result = subprocess.run([exe, str(files[0])], capture_output=True, text=True)
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
    assert errors == [], "\n".join(errors)

"""PS3.15 Basic Profile de-identification (workstation.dicom.deid) on real CT files."""

from __future__ import annotations

import shutil
import subprocess

import pydicom
import pytest

from tests.shared_data import shared_case
from workstation.dicom.deid import MAX_SHIFT_DAYS, MIN_SHIFT_DAYS, Deidentifier, DeidError, load_or_create_key

KEY = bytes(range(32))


@pytest.fixture(scope="module")
def files():
    return sorted((shared_case("ct-chest-lidc-0001") / "dicom").iterdir())[:2]


def test_pseudonyms_dates_and_uids_are_consistent_per_patient(files):
    deid = Deidentifier(KEY)
    a, b = (pydicom.dcmread(f) for f in files)
    da, db = deid.deidentify(a), deid.deidentify(b)
    assert str(da.PatientID) == str(db.PatientID) == str(da.PatientName) == deid.pseudonym("LIDC-IDRI-0001")
    assert str(da.PatientID).startswith("ANON-") and "LIDC" not in str(da.PatientID)
    assert da.StudyInstanceUID == db.StudyInstanceUID != a.StudyInstanceUID
    assert da.SeriesInstanceUID == db.SeriesInstanceUID and da.SOPInstanceUID != db.SOPInstanceUID
    assert da.FrameOfReferenceUID == deid.uid(a.FrameOfReferenceUID) and len(da.SOPInstanceUID) <= 64
    assert da.SOPClassUID == a.SOPClassUID  # a class, not an instance: kept
    assert da.file_meta.MediaStorageSOPInstanceUID == da.SOPInstanceUID
    shift = deid.date_shift_days("LIDC-IDRI-0001")
    assert MIN_SHIFT_DAYS <= shift <= MAX_SHIFT_DAYS
    import datetime as dt

    moved = dt.date(2000, 1, 1) - dt.timedelta(days=shift)
    assert da.StudyDate == da.SeriesDate == moved.strftime("%Y%m%d")
    assert da.AccessionNumber == "" and da.PatientIdentityRemoved == "YES"  # Type 2: emptied, not removed
    assert [c.CodeValue for c in da.DeidentificationMethodCodeSequence] == ["113100", "113107"]
    assert not any(e.tag.is_private for e in da.iterall())
    assert a.PatientID == "LIDC-IDRI-0001" and a.StudyDate == "20000101"  # the original is untouched
    other = Deidentifier(bytes(reversed(KEY)))
    assert other.pseudonym("LIDC-IDRI-0001") != deid.pseudonym("LIDC-IDRI-0001")
    assert other.uid(a.StudyInstanceUID) != deid.uid(a.StudyInstanceUID)


def test_no_identifying_value_is_left(files):
    ds = pydicom.dcmread(files[0])
    out = Deidentifier(KEY).deidentify(ds)
    leaks = {"LIDC-IDRI-0001", "20000101", str(ds.AccessionNumber), str(ds.StudyInstanceUID)}
    text = "\n".join(str(e.value) for e in out.iterall() if e.VR not in ("OB", "OW", "SQ"))
    assert [s for s in leaks if s in text] == []


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) is not installed")
def test_deidentified_file_adds_no_dciodvfy_errors(files, tmp_path):
    out = Deidentifier(KEY).deidentify(pydicom.dcmread(files[0]))
    out.save_as(tmp_path / "deid.dcm", enforce_file_format=True)

    def errors(path):
        run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
        return {line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")}

    assert errors(tmp_path / "deid.dcm") <= errors(files[0])


def test_key_file_is_created_once_and_checked(tmp_path):
    key = load_or_create_key(tmp_path / "k" / "deid.key")
    assert len(key) == 32 and load_or_create_key(tmp_path / "k" / "deid.key") == key
    assert (tmp_path / "k" / "deid.key").stat().st_mode & 0o777 == 0o600
    (tmp_path / "short.key").write_bytes(b"abc")
    with pytest.raises(DeidError, match="at least 16 bytes"):
        load_or_create_key(tmp_path / "short.key")
    with pytest.raises(DeidError, match="names no patient"):
        Deidentifier(KEY).deidentify(pydicom.Dataset())

"""The embedded local archive: import (folders, zip, DICOMDIR, bad files), queries, delete, threads."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
import threading
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.shared_data import shared_case
from workstation.archive.client import ArchiveClient, CancelToken, Cancelled, NotFound, StudyQuery
from workstation.archive.local import LocalArchive, safe_component

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
LIDC_STUDY = "1.3.6.1.4.1.14519.5.2.1.6279.6001.298806137288633453246975630178"


# -- helpers -----------------------------------------------------------------------------------------
def make_instance(path: Path, *, pixels: bool = True, **attrs) -> Path:
    """Write a small valid DICOM file (4x4 CT image, or an SR-like object without pixels)."""
    ds = Dataset()
    ds.SOPClassUID = CT_STORAGE if pixels else BASIC_TEXT_SR
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = attrs.pop("StudyInstanceUID", generate_uid())
    ds.SeriesInstanceUID = attrs.pop("SeriesInstanceUID", generate_uid())
    ds.Modality = "CT" if pixels else "SR"
    ds.PatientName = "TEST^PATIENT"
    ds.PatientID = "P0"
    ds.StudyDate = "20200101"
    for key, value in attrs.items():
        setattr(ds, key, value)
    if pixels:
        ds.Rows = ds.Columns = 4
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.PixelData = np.arange(16, dtype="<i2").tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def lidc_files(n: int | None = None) -> list[Path]:
    files = sorted((shared_case("ct-chest-lidc-0001") / "dicom").glob("*.dcm"))
    return files if n is None else files[:n]


def write_fileset(files: list[Path], media: Path) -> Path:
    """A DICOM file-set (DICOMDIR + files in PS3.10 folders) made from copies of ``files``."""
    from pydicom.fileset import FileSet

    fs = FileSet()
    for f in files:
        ds = pydicom.dcmread(f)
        # the STUDY record needs these and LIDC has them empty
        ds.StudyTime = ds.get("StudyTime") or "000000"
        ds.StudyID = ds.get("StudyID") or "1"
        fs.add(ds)
    fs.write(media)
    return media / "DICOMDIR"


def index_rows(archive: LocalArchive, table: str) -> int:
    with sqlite3.connect(archive.index_path) as conn:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def stored_files(archive: LocalArchive) -> list[Path]:
    return sorted(p for p in archive.files_dir.rglob("*") if p.is_file())


@pytest.fixture
def archive(tmp_path):
    a = LocalArchive(tmp_path / "archive")
    yield a
    a.close()


# -- import of real data -----------------------------------------------------------------------------
def test_local_archive_is_an_archive_client(archive):
    assert isinstance(archive, ArchiveClient)
    assert archive.name == "Local"


def test_import_lidc_folder(archive):
    case = shared_case("ct-chest-lidc-0001")
    report = archive.import_paths([case])
    assert len(report.imported) == 133
    assert report.studies == (LIDC_STUDY,)
    assert len(report.series) == 1 and not report.duplicates
    # the XML reads and the attribution text are not DICOM: named, with the reason, the rest imported
    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert set(reasons) == {"069.xml", "ATTRIBUTION"}
    assert all(r.startswith("not a DICOM file") for r in reasons.values())

    [study] = archive.find_studies(StudyQuery())
    assert (study.patient_id, study.modalities, study.number_of_series, study.number_of_instances) == (
        "LIDC-IDRI-0001", ("CT",), 1, 133)
    assert study.study_date == "20000101" and study.source == "Local"
    [series] = archive.find_series(LIDC_STUDY)
    assert series.number_of_instances == 133 and series.modality == "CT"
    paths = archive.fetch_series(series.series_instance_uid)
    assert len(paths) == 133 and all(p.is_file() for p in paths)
    assert paths[0].relative_to(archive.files_dir).parts[:2] == (LIDC_STUDY, series.series_instance_uid)
    assert archive.series_files(series.series_instance_uid) == paths
    assert len(stored_files(archive)) == 133 and index_rows(archive, "instances") == 133


def test_reimport_counts_everything_as_duplicates(archive):
    folder = shared_case("ct-chest-lidc-0001") / "dicom"
    archive.import_paths([folder])
    before = {p: p.stat().st_mtime_ns for p in stored_files(archive)}
    again = archive.import_paths([folder])
    assert not again.imported and len(again.duplicates) == 133 and not again.skipped
    assert {p: p.stat().st_mtime_ns for p in stored_files(archive)} == before  # nothing copied again


def test_seg_objects_without_images_are_imported(archive):
    case = shared_case("seg-ct-3slice-dcmqi")
    report = archive.import_paths([case / "dicom", case / "liver.dcm"])
    assert len(report.imported) == 4 and not report.skipped
    [study] = archive.find_studies(StudyQuery(modality="SEG"))
    assert study.modalities == ("CT", "SEG")


def test_store_is_import(archive):
    report = archive.store(lidc_files(2))
    assert len(report.imported) == 2


# -- zip and DICOMDIR --------------------------------------------------------------------------------
def test_zip_import_with_nested_folders(archive, tmp_path):
    zpath = tmp_path / "study.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, f in enumerate(lidc_files(4)):
            zf.write(f, f"outer/inner{n % 2}/{f.name}")
        zf.writestr("outer/readme.txt", "not an image")
        zf.writestr("outer/", "")
    report = archive.import_paths([zpath])
    assert len(report.imported) == 4
    assert [(s.path, s.reason.split(" (")[0]) for s in report.skipped] == [
        (f"{zpath}!outer/readme.txt", "not a DICOM file")]
    assert len(stored_files(archive)) == 4
    assert not list(archive.tmp_dir.rglob("*.part"))  # staging cleaned up
    assert len(archive.import_paths([zpath]).duplicates) == 4


def test_damaged_zip_is_reported(archive, tmp_path):
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    report = archive.import_paths([bad])
    assert [s.path for s in report.skipped] == [str(bad)]
    assert "damaged zip" in report.skipped[0].reason


def test_dicomdir_import(archive, tmp_path):
    media = tmp_path / "media"
    dicomdir = write_fileset(lidc_files(3), media)
    assert dicomdir.is_file()
    report = archive.import_paths([dicomdir])
    assert len(report.imported) == 3 and not report.skipped
    # walking the folder finds the same files; the DICOMDIR itself is never reported as broken
    again = archive.import_paths([media])
    assert len(again.duplicates) == 3 and not again.skipped and not again.imported


def test_dicomdir_with_missing_file(archive, tmp_path):
    media = tmp_path / "media"
    write_fileset(lidc_files(2), media)
    victim = next(p for p in media.rglob("*") if p.is_file() and p.name != "DICOMDIR")
    victim.unlink()
    report = archive.import_paths([media / "DICOMDIR"])
    assert len(report.imported) == 1
    assert [(Path(s.path), s.reason) for s in report.skipped] == [(victim, "referenced by the DICOMDIR but not found")]


# -- bad inputs --------------------------------------------------------------------------------------
def test_bad_inputs_are_reported_and_the_rest_imports(archive, tmp_path):
    src = tmp_path / "in"
    good = lidc_files(4)
    src.mkdir()
    for f in good[:3]:
        shutil.copy(f, src / f.name)
    data = good[3].read_bytes()
    (src / "truncated.dcm").write_bytes(data[: len(data) // 2])
    (src / "notes.txt").write_text("radiology report draft\n")
    (src / "empty.dcm").write_bytes(b"")
    make_instance(src / "report-sr.dcm", pixels=False, PatientName="SR^ONLY")
    (src / "copies").mkdir()
    shutil.copy(good[0], src / "copies" / "same-sop.dcm")
    no_uid = make_instance(src / "no-uid.dcm")
    ds = pydicom.dcmread(no_uid)
    del ds.SOPInstanceUID
    del ds.file_meta.MediaStorageSOPInstanceUID
    ds.save_as(no_uid)

    report = archive.import_paths([src])
    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert reasons["truncated.dcm"].startswith("truncated")
    assert reasons["notes.txt"].startswith("not a DICOM file")
    assert reasons["empty.dcm"] == "empty file (0 bytes)"
    assert reasons["no-uid.dcm"] == "missing SOP Instance UID"
    assert len(reasons) == 4
    assert len(report.imported) == 4  # 3 CT slices + the SR without pixel data
    assert [Path(p).name for p in report.duplicates] == ["same-sop.dcm"]
    [sr_study] = archive.find_studies(StudyQuery(patient_name="sr^only"))
    assert sr_study.modalities == ("SR",)


def test_missing_input_path(archive, tmp_path):
    report = archive.import_paths([tmp_path / "nope"])
    assert [(s.path, s.reason) for s in report.skipped] == [(str(tmp_path / "nope"), "no such file or folder")]


def test_unreadable_folder_is_reported(archive, tmp_path, monkeypatch):
    src = tmp_path / "in"
    make_instance(src / "ok.dcm")
    locked = src / "locked"
    make_instance(locked / "hidden.dcm")
    if os.geteuid() != 0:
        locked.chmod(0)
    else:  # root reads everything, so make the listing fail the way a locked folder does
        real_scandir = os.scandir

        def scandir(path="."):
            if isinstance(path, (str, os.PathLike)) and Path(path) == locked:
                raise PermissionError(13, "Permission denied", str(path))
            return real_scandir(path)

        monkeypatch.setattr(os, "scandir", scandir)
    try:
        report = archive.import_paths([src])
    finally:
        locked.chmod(0o755)
    assert len(report.imported) == 1
    assert [(s.path, s.reason) for s in report.skipped] == [(str(locked), "unreadable folder: Permission denied")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read files without read permission")
def test_unreadable_file_is_reported(archive, tmp_path):
    f = make_instance(tmp_path / "secret.dcm")
    f.chmod(0)
    report = archive.import_paths([f])
    assert [(s.path, s.reason) for s in report.skipped] == [(str(f), "permission denied")]


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_odd_uids_never_escape_the_files_folder(archive, tmp_path):
    make_instance(tmp_path / "odd.dcm", StudyInstanceUID="../../evil", SeriesInstanceUID="a/b")
    report = archive.import_paths([tmp_path / "odd.dcm"])
    assert len(report.imported) == 1
    [stored] = stored_files(archive)
    assert archive.files_dir in stored.parents and ".." not in stored.relative_to(archive.root).parts
    assert safe_component("1.2.3") == "1.2.3" and safe_component("../x").startswith("x")


def test_instances_without_study_and_series_uid_get_stable_uids(archive):
    """The J2K abdomen case was anonymised down to no Study/Series Instance UID; it still imports as one series."""
    report = archive.import_paths([shared_case("ct-abdomen-j2k") / "dicom"])
    assert len(report.imported) == 20 and len(report.series) == 1 and not report.skipped
    assert report.studies[0].startswith("2.25.")


# -- queries -----------------------------------------------------------------------------------------
@pytest.fixture
def populated(archive, tmp_path):
    """Three patients, four studies, with the attributes the browser filters on."""
    def study(name, pid, date, acc, desc, *modalities):
        uid = generate_uid()
        for m in modalities:
            make_instance(tmp_path / "q" / f"{uid}-{m}.dcm", pixels=m != "SR", StudyInstanceUID=uid,
                          PatientName=name, PatientID=pid, StudyDate=date, AccessionNumber=acc,
                          StudyDescription=desc, Modality=m)
        return uid

    uids = {
        "doe_ct": study("DOE^JOHN", "ID-001", "20210315", "ACC100", "CT CHEST W/O", "CT", "SR"),
        "doe_mr": study("DOE^JOHN", "ID-001", "20230101", "ACC200", "MR BRAIN", "MR"),
        "muller": study("MÜLLER^ANNA", "ID-002", "20190720", "X-77", "CT ABDOMEN", "CT"),
        "roe": study("ROE^JANE", "ZZ9", "", "ACC300", "chest pa", "CR"),
    }
    report = archive.import_paths([tmp_path / "q"])
    assert len(report.imported) == 5, report.skipped
    return archive, uids


def _found(archive, **kw) -> list[str]:
    return [s.study_instance_uid for s in archive.find_studies(StudyQuery(**kw))]


def test_query_all_newest_first(populated):
    archive, u = populated
    assert _found(archive) == [u["doe_mr"], u["doe_ct"], u["muller"], u["roe"]]  # undated last


def test_query_patient_name(populated):
    archive, u = populated
    assert set(_found(archive, patient_name="doe*")) == {u["doe_ct"], u["doe_mr"]}
    assert _found(archive, patient_name="?OE^JA*") == [u["roe"]]
    assert _found(archive, patient_name="jane") == [u["roe"]]  # plain text: substring
    assert _found(archive, patient_name="müller") == [u["muller"]]  # case-insensitive beyond ASCII
    assert set(_found(archive, patient_name="doe john")) == {u["doe_ct"], u["doe_mr"]}  # ^ matches a space
    assert _found(archive, patient_name="D*E") == []  # a wildcard pattern matches the whole name
    assert _found(archive, patient_name="100%") == []  # SQL wildcards in the text are literal


def test_query_id_accession_description(populated):
    archive, u = populated
    assert set(_found(archive, patient_id="ID-001")) == {u["doe_ct"], u["doe_mr"]}
    assert _found(archive, patient_id="zz?") == [u["roe"]]
    assert _found(archive, accession_number="acc2*") == [u["doe_mr"]]
    assert set(_found(archive, study_description="chest")) == {u["doe_ct"], u["roe"]}
    assert _found(archive, study_description="CT*W/O") == [u["doe_ct"]]


def test_query_modality_and_dates(populated):
    archive, u = populated
    assert set(_found(archive, modality="ct")) == {u["doe_ct"], u["muller"]}
    assert _found(archive, modality="SR") == [u["doe_ct"]]  # any series of the study
    assert _found(archive, date_from=dt.date(2020, 1, 1)) == [u["doe_mr"], u["doe_ct"]]
    assert _found(archive, date_from=dt.date(2019, 1, 1), date_to=dt.date(2021, 12, 31)) == [u["doe_ct"], u["muller"]]
    assert _found(archive, modality="CT", date_to=dt.date(2020, 1, 1)) == [u["muller"]]
    assert len(_found(archive, limit=2)) == 2
    [doe_ct] = archive.find_studies(StudyQuery(accession_number="ACC100"))
    assert doe_ct.modalities == ("CT", "SR") and doe_ct.number_of_series == 2 and doe_ct.number_of_instances == 2


# -- delete ------------------------------------------------------------------------------------------
def test_delete_study_removes_files_and_rows(populated):
    archive, u = populated
    before = len(stored_files(archive))
    assert archive.delete_study(u["doe_ct"]) == 2
    assert len(stored_files(archive)) == before - 2
    assert u["doe_ct"] not in _found(archive)
    assert not (archive.files_dir / u["doe_ct"]).exists()
    assert archive.find_series(u["doe_ct"]) == []
    assert index_rows(archive, "patients") == 3  # DOE still has the MR study
    archive.delete_study(u["doe_mr"])
    assert index_rows(archive, "patients") == 2  # now the patient row goes too
    with pytest.raises(NotFound):
        archive.delete_study(u["doe_ct"])
    with sqlite3.connect(archive.index_path) as conn:  # no orphans: every row points at a file
        for (rel,) in conn.execute("SELECT path FROM instances"):
            assert (archive.root / rel).is_file()


def test_unknown_series_is_not_found(archive):
    with pytest.raises(NotFound):
        archive.fetch_series("1.2.3.4")


# -- progress, cancel, threads -------------------------------------------------------------------------
def test_progress_and_cancel_keep_what_was_done(archive):
    token = CancelToken()
    seen = []

    def progress(p):
        seen.append((p.done, p.total))
        if p.done == 10:
            token.cancel()

    with pytest.raises(Cancelled):
        archive.import_paths(lidc_files(), progress, token)
    assert seen[0] == (1, 133) and seen[-1] == (10, 133)
    assert index_rows(archive, "instances") == 10 == len(stored_files(archive))
    [study] = archive.find_studies(StudyQuery())
    assert study.number_of_instances == 10
    rest = archive.import_paths(lidc_files())  # finishing later imports the rest
    assert len(rest.imported) == 123 and len(rest.duplicates) == 10


def test_queries_from_other_threads_during_import(archive):
    errors: list[BaseException] = []
    stop = threading.Event()

    def browse():
        try:
            while not stop.is_set():
                for s in archive.find_studies(StudyQuery()):
                    archive.find_series(s.study_instance_uid)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    workers = [threading.Thread(target=browse) for _ in range(3)]
    for w in workers:
        w.start()
    try:
        report = archive.import_paths(lidc_files(60))
    finally:
        stop.set()
        for w in workers:
            w.join()
    assert not errors and len(report.imported) == 60


def test_reopening_the_archive_keeps_the_index(tmp_path):
    with LocalArchive(tmp_path / "a") as a:
        a.import_paths(lidc_files(3))
    with LocalArchive(tmp_path / "a") as b:
        assert b.find_studies(StudyQuery())[0].number_of_instances == 3

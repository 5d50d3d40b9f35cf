"""A series whose files carry no window (many MR series) is shown with a window of its own while it loads
and once loaded: not the width-1 window of the still empty voxel array, which showed it as a black and
white mask.  A window the user chose is kept when the load completes."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

N, SIZE = 24, 64


def _write_mr(folder) -> str:
    """N axial MR slices without WindowCenter/Width: background 0, tissue 200-430 rising with the slice."""
    folder.mkdir()
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for k in range(N):
        ds = Dataset()
        sop = generate_uid()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = MRImageStorage, sop
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.PatientName, ds.PatientID, ds.StudyDate = "MR", "WINDOW^TEST", "W1", "20260101"
        ds.SeriesNumber, ds.InstanceNumber, ds.SeriesDescription = 7, k + 1, "no window in the files"
        ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, 2.0 * k], [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [1, 1], 2
        ds.Rows = ds.Columns = SIZE
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        img = np.zeros((SIZE, SIZE), np.uint16)
        img[8:56, 8:56] = 200 + 10 * k + np.arange(48, dtype=np.uint16)[None, :] // 4
        ds.PixelData = img.tobytes()
        ds.save_as(folder / f"{k:02d}.dcm", enforce_file_format=True)
    return series


def test_a_series_without_a_window_in_its_files_gets_its_own_while_loading_and_after(main_window, tmp_path):
    series_uid = _write_mr(tmp_path / "mr")
    archive = main_window.archive
    report = archive.local.import_paths([tmp_path / "mr"])
    assert len(report.imported) == N, report.skipped
    ref = next(s for st in archive.find_studies() for s in archive.find_series(st.study_instance_uid)
               if s.series_instance_uid == series_uid)
    vp = main_window.viewer.active_slice_viewport()
    seen = []  # the window shown after each step of the load
    vp._partial.arrived.connect(lambda vol: seen.append(("partial", vp.view.window)))
    original = vp._on_progress

    def on_progress(p):
        original(p)
        seen.append((p.text, vp.view.window))

    vp._on_progress = on_progress
    main_window.open_series(ref)
    volume = vp.volume
    assert volume.shape == (N, SIZE, SIZE) and volume.info.default_window is None
    decoding = [w for text, w in seen if text.startswith("decoding")]
    assert decoding and all(w.width > 1 for w in decoding), seen
    assert decoding[0] == volume.slice_window(N // 2)  # the first decoded slice's own window
    assert vp.view.window == volume.auto_window() and vp.view.window.width > 100  # the whole series'

    vp.apply_preset("brain")  # a window the user chose stays when the series is loaded again
    chosen = vp.view.window
    vp.set_volume(volume, keep_view=True)
    assert vp.view.window == chosen
    vp.apply_preset("auto")
    vp.set_volume(volume, keep_view=True)
    assert vp.view.window == volume.auto_window()

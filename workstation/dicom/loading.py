"""Decode a :class:`SeriesPlan` into a :class:`Volume`: progressive, cancellable, one allocation.

The voxel array is allocated once, handed to ``into`` straight away (so a viewer can show slices as
they land), then filled middle slice first.  Native little-endian slices are read with ``readinto``
directly into the array (or into one slice-sized buffer when a rescale is needed); compressed
slices go through pydicom's decoders.  A small thread pool overlaps file I/O and decoding.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace

import numpy as np
from pydicom.dataset import Dataset

from workstation.dicom._tasks import Cancelled, CancelToken
from workstation.dicom.errors import DicomReadError
from workstation.dicom.plan import SeriesKind, SeriesPlan, SliceSource
from workstation.dicom.reading import decode_all_frames, fix_high_bits, read_header, read_raw_into, stored_dtype
from workstation.dicom.resample import resample_to_regular_grid
from workstation.dicom.stack import unit_axes
from workstation.model.volume import Photometric, Volume, VolumeInfo, Window

#: Threads that read/decode slices; more does not help on one disk and costs memory for decoders.
WORKERS = 4
_INT16 = (-32768, 32767)


@dataclass(frozen=True)
class _PixelSpec:
    out_dtype: np.dtype
    stored: np.dtype
    bits_stored: int
    samples: int
    raw_ok: bool  # the raw offsets in the plan may be used (native LE, interleaved, no YBR)
    photometric: Photometric


def load_volume(
    plan: SeriesPlan,
    on_slice: Callable[[int, int], None] | None = None,
    cancel: CancelToken | None = None,
    *,
    into: Callable[[Volume], None] | None = None,
) -> Volume:
    """Decode the plan's slices into a Volume on an orthogonal, evenly spaced grid.

    Parameters
    ----------
    plan
        From :func:`workstation.dicom.series.examine`.
    on_slice
        Called as ``on_slice(done, total)`` after each slice is decoded (in the calling thread).
    cancel
        Checked between slices; raises :class:`Cancelled`.
    into
        Called once, right after allocation, with a Volume whose ``voxels`` is the very array being
        filled and whose affine is that of the acquired grid.  When the acquisition must be
        resampled (gantry tilt, uneven steps), the returned Volume is a new, resampled one.
    """
    ds = read_header(plan.slices[0].path)
    spec = _pixel_spec(plan, ds)
    n = len(plan.slices)
    shape = (n, plan.rows, plan.columns) + ((3,) if spec.samples == 3 else ())
    voxels = np.empty(shape, spec.out_dtype)
    info = _info(plan, ds, spec)
    volume = Volume(voxels, acquired_affine(plan), info)
    if into is not None:
        into(volume)
    notes = _fill(plan, spec, voxels, on_slice, cancel)
    padding = _padding(ds, plan, voxels)
    info = replace(info, padding_value=padding, warnings=info.warnings + tuple(notes))
    volume = Volume(voxels, volume.affine, info)
    if plan.needs_resampling:
        fill = padding if padding is not None else float(voxels.min())
        volume = resample_to_regular_grid(volume, plan, fill)
    return volume


def _check_file(path: str, size: int) -> None:
    """Raise :class:`DicomReadError` if ``path`` vanished or changed size since ``examine``.

    Checked just before each file is read (in the decoding threads), not all up front, so the
    first slice is not held back by a stat of every file in a long series.
    """
    try:
        now = os.stat(path).st_size
    except FileNotFoundError:
        raise DicomReadError(path, "file vanished since the series was examined") from None
    except OSError as exc:
        raise DicomReadError(path, f"cannot read file: {exc.strerror or exc}") from None
    if size >= 0 and now != size:
        raise DicomReadError(path, f"file changed since the series was examined ({size} -> {now} bytes)")


def _pixel_spec(plan: SeriesPlan, ds: Dataset) -> _PixelSpec:
    samples = int(ds.get("SamplesPerPixel", 1))
    stored = stored_dtype(ds)
    bits = int(ds.get("BitsStored", ds.BitsAllocated))
    pi = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    raw_ok = not (samples == 3 and int(ds.get("PlanarConfiguration", 0)) == 1) and not pi.startswith("YBR")
    if samples == 3:
        return _PixelSpec(np.dtype(np.uint8), stored, bits, 3, raw_ok and stored.itemsize == 1, Photometric.RGB)
    photometric = Photometric.MONOCHROME1 if pi == "MONOCHROME1" else Photometric.MONOCHROME2
    if stored.kind == "i":
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    else:
        lo, hi = 0, (1 << bits) - 1
    integral = all(float(s.slope).is_integer() and float(s.intercept).is_integer() for s in plan.slices)
    ends = [v for s in plan.slices for v in (lo * s.slope + s.intercept, hi * s.slope + s.intercept)]
    fits = _INT16[0] <= min(ends) and max(ends) <= _INT16[1]
    # CT values are HU, which live in int16 even when BitsStored claims 16 bits plus an intercept
    ct_hu = plan.modality == "CT" and all(abs(s.slope) == 1 for s in plan.slices)
    out = np.dtype(np.int16) if integral and (fits or ct_hu) else np.dtype(np.float32)
    return _PixelSpec(out, stored, bits, 1, raw_ok, photometric)


def acquired_affine(plan: SeriesPlan) -> np.ndarray:
    """Index->LPS affine of the grid as acquired (sheared when tilted, mean step when uneven)."""
    dr, dc = plan.pixel_spacing
    a = np.eye(4)
    if plan.kind is SeriesKind.IMAGES:
        a[:3, 0], a[:3, 1], a[:3, 2] = (dc, 0, 0), (0, dr, 0), (0, 0, plan.slice_thickness or 1.0)
        return a
    r, c, n = unit_axes(plan.row_cosine, plan.column_cosine)
    first = np.asarray(plan.slices[0].position, float)
    k = len(plan.slices)
    if k < 2:
        slice_vec = n * (plan.slice_thickness or 1.0)
    elif plan.needs_resampling:
        slice_vec = (np.asarray(plan.slices[-1].position, float) - first) / (k - 1)
    else:  # even and unsheared: keep the grid exactly orthogonal
        slice_vec = n * (plan.positions_mm[-1] - plan.positions_mm[0]) / (k - 1)
    a[:3, 0], a[:3, 1], a[:3, 2], a[:3, 3] = r * dc, c * dr, slice_vec, first
    return a


def _info(plan: SeriesPlan, ds: Dataset, spec: _PixelSpec) -> VolumeInfo:
    units = "HU" if plan.modality == "CT" else str(ds.get("RescaleType", "") or "")
    window = Window(*plan.window) if plan.window and spec.samples == 1 else None
    return VolumeInfo(
        modality=plan.modality, series_instance_uid=plan.series_instance_uid,
        study_instance_uid=plan.study_instance_uid, frame_of_reference_uid=plan.frame_of_reference_uid,
        patient_name=plan.patient_name, patient_id=plan.patient_id, study_date=plan.study_date,
        series_description=plan.series_description, series_number=plan.series_number, units=units,
        photometric=spec.photometric, default_window=window, gantry_tilt_deg=plan.gantry_tilt_deg,
        acquired_slice_positions_mm=plan.positions_mm, warnings=plan.warnings,
        source_sop_instance_uids=tuple(dict.fromkeys(s.sop_instance_uid for s in plan.slices)),
    )


def _middle_first(n: int) -> list[int]:
    """n//2, then alternately outward: a viewer opening on the middle slice shows it at once."""
    mid = n // 2
    order = [mid]
    for d in range(1, n):
        for k in (mid - d, mid + d):
            if 0 <= k < n:
                order.append(k)
    return order[:n]


def _fill(plan: SeriesPlan, spec: _PixelSpec, voxels: np.ndarray,
          on_slice: Callable[[int, int], None] | None, cancel: CancelToken | None) -> list[str]:
    """Decode every slice into ``voxels``; returns notes (e.g. clipped values)."""
    n = len(plan.slices)
    notes: list[str] = []
    sizes = dict(zip(plan.files, plan.file_sizes))
    decoded = _predecode_multiframe(plan, spec)
    lock = threading.Lock()

    def one(k: int) -> None:
        _check_file(plan.slices[k].path, sizes.get(plan.slices[k].path, -1))
        clipped = _decode_slice(plan.slices[k], spec, voxels[k], decoded)
        if clipped:
            with lock:
                notes.append(f"slice {k}: values outside int16 clipped")

    order = _middle_first(n)
    one(order[0])  # the first slice synchronously: shown before the pool even starts
    if on_slice is not None:
        on_slice(1, n)
    done = 1
    with ThreadPoolExecutor(max_workers=min(WORKERS, max(1, n - 1))) as pool:
        pending = {pool.submit(one, k) for k in order[1:]}
        while pending:
            finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            if cancel is not None and cancel.cancelled:
                for f in pending:
                    f.cancel()
                raise Cancelled()
            for f in finished:
                f.result()  # re-raise a DicomReadError from the worker
                done += 1
                if on_slice is not None:
                    on_slice(done, n)
    return sorted(set(notes))[:5]


def _predecode_multiframe(plan: SeriesPlan, spec: _PixelSpec) -> dict[str, np.ndarray]:
    """Compressed multi-frame files are decoded once as a whole (codecs work per file)."""
    out: dict[str, np.ndarray] = {}
    if spec.raw_ok and all(s.raw_offset is not None for s in plan.slices):
        return out
    counts: dict[str, int] = {}
    for s in plan.slices:
        counts[s.path] = counts.get(s.path, 0) + 1
    for path, count in counts.items():
        if count > 1:
            out[path] = decode_all_frames(path)[1]
    return out


def _decode_slice(src: SliceSource, spec: _PixelSpec, dst: np.ndarray, decoded: dict[str, np.ndarray]) -> bool:
    """Decode one slice into ``dst`` with the modality LUT applied; True when values were clipped."""
    identity = src.slope == 1 and src.intercept == 0
    if spec.raw_ok and src.raw_offset is not None:
        if identity and spec.stored == dst.dtype:
            read_raw_into(src.path, src.raw_offset, dst, spec.bits_stored)
            return False
        frame = np.empty(dst.shape, spec.stored)
        read_raw_into(src.path, src.raw_offset, frame, spec.bits_stored)
    elif src.path in decoded:
        frame = decoded[src.path][src.frame]
    else:
        frame = decode_all_frames(src.path)[1][src.frame]
        if frame.dtype.kind in "iu" and frame.dtype.itemsize * 8 > spec.bits_stored and spec.samples == 1:
            frame = np.ascontiguousarray(frame)
            fix_high_bits(frame, spec.bits_stored)
    return _rescale_into(frame, dst, src.slope, src.intercept)


def _rescale_into(frame: np.ndarray, dst: np.ndarray, slope: float, intercept: float) -> bool:
    if dst.dtype == np.float32:
        np.multiply(frame, np.float32(slope), out=dst, casting="unsafe")
        dst += np.float32(intercept)
        return False
    if dst.dtype == np.uint8 or (slope == 1 and intercept == 0 and frame.dtype == dst.dtype):
        dst[...] = frame
        return False
    t = frame.astype(np.int32)
    if slope != 1:
        t *= int(slope)
    if intercept != 0:
        t += int(intercept)
    lo, hi = int(t.min()), int(t.max())
    clipped = lo < _INT16[0] or hi > _INT16[1]
    if clipped:
        np.clip(t, *_INT16, out=t)
    dst[...] = t
    return clipped


def _padding(ds: Dataset, plan: SeriesPlan, voxels: np.ndarray) -> float | None:
    """The value that means "outside the scan" in output units, when the voxels contain it.

    PixelPaddingValue is used when present in the data; otherwise, for CT, a minimum of -2000 HU
    or lower that fills the image corners (LIDC stores -2048 HU there without declaring it).
    """
    if voxels.ndim != 3 or voxels.size == 0:
        return None
    vmin = float(voxels.min())
    ppv = ds.get("PixelPaddingValue")
    if ppv is not None and not isinstance(ppv, (list, tuple)):
        stored = int(ppv)
        if int(ds.get("PixelRepresentation", 0)) == 1 and stored > 32767:
            stored -= 65536  # written as US although the pixels are signed
        s = plan.slices[0]
        value = stored * s.slope + s.intercept
        if vmin <= value:
            return float(value)
    if plan.modality == "CT" and vmin <= -2000:
        corners = voxels[:, [0, 0, -1, -1], [0, -1, 0, -1]]
        if np.any(corners == vmin):
            return vmin
    return None

"""The plan cache: exact JSON round trip of plans, hits without header reads, damage and change."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from tests.shared_data import shared_case
from workstation.dicom import series
from workstation.dicom.errors import DicomReadError
from workstation.dicom.plan_cache import PlanCache, plan_from_json, plan_to_json
from workstation.dicom.series import examine, load_volume


@pytest.fixture
def header_reads(monkeypatch):
    """Counts the header reads ``examine`` makes."""
    calls: list[str] = []
    real = series.read_header_and_pixels

    def counting(path, *args, **kwargs):
        calls.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(series, "read_header_and_pixels", counting)
    return calls


@pytest.fixture
def small_copy(tmp_path):
    """Five LIDC slices copied to a writable folder."""
    src = shared_case("ct-chest-lidc-0001") / "dicom"
    dst = tmp_path / "series"
    dst.mkdir()
    for f in sorted(src.iterdir())[:5]:
        shutil.copy2(f, dst / f.name)
    return dst


@pytest.mark.parametrize("case", ["ct-chest-lidc-0001", "ct-head-ge-tilt", "mr-slice-codecs"])
def test_round_trip_is_exact(case):
    plans, _ = examine([shared_case(case) / "dicom"])
    assert plans
    for plan in plans:
        text = json.dumps(plan_to_json(plan))
        back = plan_from_json(json.loads(text))
        assert back == plan
        assert type(back.kind) is type(plan.kind) and isinstance(back.slices, tuple)
        assert all(isinstance(v, tuple) for v in (back.files, back.positions_mm, back.row_cosine, back.file_sizes))
    if case == "ct-head-ge-tilt":
        assert any(p.needs_resampling for p in plans)


def test_hit_reads_no_header_and_equals_examine(tmp_path, header_reads):
    folder = shared_case("ct-head-ge-tilt") / "dicom"
    cache = PlanCache(tmp_path / "cache")
    first = cache.examine_cached([folder])
    n = len(header_reads)
    assert n > 0 and len(list((tmp_path / "cache").glob("*.json"))) == 1
    second = cache.examine_cached([folder])
    assert len(header_reads) == n  # nothing read again
    assert second == first == examine([folder])
    assert load_volume(second[0][0]).shape == load_volume(first[0][0]).shape


def test_corrupted_entry_is_recomputed_and_overwritten(tmp_path, header_reads, small_copy):
    cache = PlanCache(tmp_path / "cache")
    expected = cache.examine_cached([small_copy])
    (entry,) = (tmp_path / "cache").glob("*.json")
    for damage in ("{not json", json.dumps({"format": 999}), "", json.dumps({"format": 1, "plans": [{}]})):
        entry.write_text(damage)
        reads = len(header_reads)
        assert cache.examine_cached([small_copy]) == expected
        assert len(header_reads) == reads + 5
    reads = len(header_reads)
    assert cache.examine_cached([small_copy]) == expected  # the overwritten entry is good again
    assert len(header_reads) == reads


def test_touched_or_resized_file_misses(tmp_path, header_reads, small_copy):
    cache = PlanCache(tmp_path / "cache")
    cache.examine_cached([small_copy])
    victim = sorted(small_copy.iterdir())[2]
    st = victim.stat()
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    reads = len(header_reads)
    cache.examine_cached([small_copy])
    assert len(header_reads) == reads + 5
    with open(victim, "ab") as fp:
        fp.write(b"\0\0")
    reads = len(header_reads)
    cache.examine_cached([small_copy])
    assert len(header_reads) == reads + 5
    reads = len(header_reads)
    cache.examine_cached([small_copy])
    assert len(header_reads) == reads


def test_load_names_a_file_changed_or_vanished_since_examine(tmp_path, small_copy):
    plans, _ = PlanCache(tmp_path / "cache").examine_cached([small_copy])
    plan = plans[0]
    victim = plan.files[1]
    with open(victim, "ab") as fp:
        fp.write(b"\0\0")
    with pytest.raises(DicomReadError, match="changed since") as info:
        load_volume(plan)
    assert info.value.path == victim
    os.remove(victim)
    with pytest.raises(DicomReadError, match="vanished") as info:
        load_volume(plan)
    assert info.value.path == victim


def test_entries_are_bounded_least_recently_used_first(tmp_path, small_copy):
    cache = PlanCache(tmp_path / "cache", max_entries=2)
    files = sorted(small_copy.iterdir())
    keys = []
    for n, f in enumerate(files[:3]):
        cache.examine_cached([f])
        entries = sorted((tmp_path / "cache").glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
        keys.append(entries[-1].name)
        if n == 1:  # a hit on the first entry makes it the most recently used
            os.utime(tmp_path / "cache" / keys[0], ns=(1, 1))
            os.utime(tmp_path / "cache" / keys[1], ns=(1, 1))
            cache.examine_cached([files[0]])
    left = {p.name for p in (tmp_path / "cache").glob("*.json")}
    assert left == {keys[0], keys[2]}


def test_unwritable_cache_folder_still_examines(tmp_path, small_copy):
    blocker = tmp_path / "file"
    blocker.write_text("")
    plans, skipped = PlanCache(blocker / "cache").examine_cached([small_copy])
    assert len(plans) == 1 and skipped == []

"""Retrieval order (middle slices first) and the cache's all-or-nothing writes."""

from __future__ import annotations

import pytest

from workstation.archive._order import InstanceSpot, middle_out, spatial_order
from workstation.archive.cache import SeriesCache


def test_middle_out_visits_everything_once_from_the_middle():
    assert middle_out(list(range(7))) == [3, 2, 4, 1, 5, 0, 6]
    assert middle_out(list(range(6))) == [2, 1, 3, 0, 4, 5]
    assert middle_out([]) == []
    assert sorted(middle_out(list(range(133)))) == list(range(133))


def test_spatial_order_follows_the_normal_not_the_instance_number():
    axial = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    spots = [InstanceSpot(f"1.{n}", (0.0, 0.0, z), axial, instance_number=n) for n, z in enumerate([5, -5, 0])]
    assert [s.sop_uid for s in spatial_order(spots)] == ["1.1", "1.2", "1.0"]
    no_geometry = [InstanceSpot("a", instance_number=3), InstanceSpot("b", instance_number=1), InstanceSpot("c")]
    assert [s.sop_uid for s in spatial_order(no_geometry)] == ["b", "a", "c"]


def test_cache_write_is_all_or_nothing(tmp_path):
    cache = SeriesCache(tmp_path, "1.2", "1.2.3")

    def broken():
        yield b"DICM" * 100
        raise ConnectionError("network went away")

    with pytest.raises(ConnectionError):
        cache.write_bytes("1.2.3.4", broken())
    assert not cache.has("1.2.3.4") and list(cache.folder.iterdir()) == []
    path, size = cache.write_bytes("1.2.3.4", [b"abc", b"def"])
    assert path.read_bytes() == b"abcdef" and size == 6 and cache.files() == [path]
    cache.temp_path("1.2.3.5").write_bytes(b"half")  # a crash's leftover
    cache.remove_parts()
    assert cache.files() == [path] and len(list(cache.folder.iterdir())) == 1


def test_cache_names_odd_uids_safely(tmp_path):
    cache = SeriesCache(tmp_path, "../../etc", "1.2")
    assert cache.path("../x").resolve().is_relative_to(tmp_path.resolve())

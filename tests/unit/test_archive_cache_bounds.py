"""The bounded retrieval cache: index by SOP UID, least recently used out, pinned studies kept."""

from __future__ import annotations

import time

import pytest

from workstation.archive.cache import INDEX_NAME, CacheIndex
from workstation.config import ConfigError, load_settings


def _series(index: CacheIndex, study: str, series: str, n: int, size: int = 1000) -> list[str]:
    cache = index.series_cache(study, series)
    sops = [f"{series}.{k}" for k in range(n)]
    for sop in sops:
        cache.write_bytes(sop, [b"x" * size])
    index.finish(study, series, sops)
    time.sleep(0.01)  # distinct access times
    return sops


def test_index_records_every_instance_and_opens_complete_series(tmp_path):
    index = CacheIndex(tmp_path, max_bytes=10**9)
    sops = _series(index, "1.1", "1.1.1", 4)
    assert (tmp_path / INDEX_NAME).is_file()
    st = index.status()
    assert (st.instances, st.series, st.studies, st.bytes_used) == (4, 1, 1, 4000)
    study, paths = index.complete_files("1.1.1")
    assert study == "1.1" and [p.stem for p in paths] == sops
    paths[1].unlink()  # a file vanished: no longer complete, the next fetch goes to the network
    assert index.complete_files("1.1.1") is None
    assert index.complete_files("9.9") is None


def test_least_recently_used_series_go_first_and_pins_stay(tmp_path):
    index = CacheIndex(tmp_path, max_bytes=10_000)
    _series(index, "1", "1.a", 3, 1000)  # oldest, but pinned
    index.pin("1")
    _series(index, "2", "2.a", 3, 1000)
    _series(index, "3", "3.a", 3, 1000)
    assert index.open_complete("2.a") is not None  # used again: now newer than 3.a
    time.sleep(0.01)
    _series(index, "4", "4.a", 3, 1000)  # 12 kB > 10 kB: one series must go
    assert index.complete_files("3.a") is None and not (tmp_path / "3").exists()
    for kept in ("1.a", "2.a", "4.a"):
        assert index.complete_files(kept) is not None, kept
    assert index.bytes_used() == 9000
    assert index.pinned() == ("1",)
    index.unpin("1")
    _series(index, "5", "5.a", 3, 1000)
    assert index.complete_files("1.a") is None  # unpinned and oldest


def test_series_being_retrieved_is_never_evicted(tmp_path):
    index = CacheIndex(tmp_path, max_bytes=2000)
    with index.retrieving("busy"):
        cache = index.series_cache("9", "busy")
        cache.write_bytes("busy.1", [b"x" * 1500])
        _series(index, "8", "other", 1, 1500)
        assert cache.has("busy.1")


def test_clear_keeps_pinned_studies_unless_asked(tmp_path):
    index = CacheIndex(tmp_path)
    _series(index, "1", "1.a", 2)
    _series(index, "2", "2.a", 2)
    index.pin("2")
    assert index.clear() == 1
    assert index.complete_files("2.a") is not None and index.complete_files("1.a") is None
    index.clear(include_pinned=True)
    assert index.status().instances == 0


def test_cache_limit_setting(tmp_path):
    env = {"WORKSTATION_HOME": str(tmp_path)}
    assert load_settings(env).cache_max_mb == 20000
    (tmp_path / "workstation.toml").write_text("cache_max_mb = 512\n")
    settings = load_settings(env)
    assert settings.cache_max_mb == 512 and settings.instance_cache_dir == settings.cache_dir / "instances"
    (tmp_path / "workstation.toml").write_text('cache_max_mb = "lots"\n')
    with pytest.raises(ConfigError, match="cache_max_mb"):
        load_settings(env)


def test_cli_cache_status_pin_unpin_clear(tmp_path, capsys):
    from workstation.cli import main

    home = ["--home", str(tmp_path)]
    assert main([*home, "cache", "pin", "1.2.3"]) == 0
    assert main([*home, "cache", "status"]) == 0
    out = capsys.readouterr().out
    assert "0 instances" in out and "pinned 1.2.3" in out
    assert main([*home, "cache", "unpin", "1.2.3"]) == 0
    assert main([*home, "cache", "clear"]) == 0
    assert "removed 0 series" in capsys.readouterr().out

import errno
import os
from unittest import mock

import numpy as np
import pytest

from benchmark.cache import ArrayCache, EntrySpec


def test_hit_after_put_and_namespaces_are_separate(tmp_path):
    cache = ArrayCache(tmp_path, {"encoder": "a", "sr": 1})
    assert cache.get("ab" * 32) is None
    cache.put("ab" * 32, np.arange(4, dtype=np.float32))
    np.testing.assert_array_equal(cache.get("ab" * 32), np.arange(4))
    other = ArrayCache(tmp_path, {"encoder": "a", "sr": 2})  # changed parameter → different namespace
    assert other.get("ab" * 32) is None
    assert (cache.hits, cache.misses) == (1, 1)


def test_corrupt_entry_is_a_miss_and_is_overwritten(tmp_path):
    cache = ArrayCache(tmp_path, {"x": 1})
    key = "cd" * 32
    cache.put(key, np.ones(3, dtype=np.float32))
    path = next(tmp_path.rglob(f"{key}.npy"))
    path.write_bytes(b"\x93NUMPY garbage")
    assert cache.get(key) is None
    cache.put(key, np.ones(3, dtype=np.float32))
    assert cache.get(key) is not None
    assert not list(tmp_path.rglob(".tmp-*"))  # no temporary files left behind


def test_disabled_cache_never_hits(tmp_path):
    cache = ArrayCache(None, {"x": 1})
    cache.put("ef" * 32, np.ones(2))
    assert cache.get("ef" * 32) is None


# --- validation on read, degraded writes (issue 13, items 3 and 10) ---


KEY = "9a" * 32


def _entry(cache: ArrayCache):
    path = cache.folder / KEY[:2] / f"{KEY}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.parametrize(
    "bad",
    [
        np.ones(4, dtype=np.int64),  # right length, integer: was served as an embedding
        np.ones(4, dtype=bool),
        np.ones(3, dtype=np.float32),  # wrong length
        np.array(["a", "b", "c", "d"]),  # string dtype
        np.ones((2, 2), dtype=np.float32),  # 2-D where a sequence is expected
        np.array([1.0, np.nan, 0.0, 0.0]),
    ],
    ids=["int", "bool", "short", "str", "2d", "nan"],
)
def test_invalid_entry_is_a_counted_miss_and_is_repaired(tmp_path, bad):
    cache = ArrayCache(tmp_path, {"x": 1}, spec=EntrySpec(shape=(4,)))
    np.save(_entry(cache), bad)
    assert cache.get(KEY) is None
    assert (cache.hits, cache.misses, cache.repaired) == (0, 1, 1)
    cache.put(KEY, np.arange(4, dtype=np.float32))  # the caller's re-computed value overwrites it
    np.testing.assert_array_equal(cache.get(KEY), np.arange(4))


def test_empty_or_2d_feature_sequence_is_invalid_by_default(tmp_path):
    cache = ArrayCache(tmp_path, {"metric": "melody"})  # default spec: a non-empty 1-D float sequence
    np.save(_entry(cache), np.zeros(0))
    assert cache.get(KEY) is None
    np.save(_entry(cache), np.zeros((3, 2)))
    assert cache.get(KEY) is None
    assert cache.repaired == 2
    np.save(_entry(cache), np.zeros(7))
    assert cache.get(KEY).shape == (7,)


def test_fifo_in_an_entrys_place_is_a_miss_not_a_hang(tmp_path):
    cache = ArrayCache(tmp_path, {"x": 1})
    os.mkfifo(_entry(cache))
    assert cache.get(KEY) is None  # a blocking open would hang here (the per-test timeout would fail it)
    cache.put(KEY, np.ones(2))  # the FIFO is replaced by a real entry
    np.testing.assert_array_equal(cache.get(KEY), np.ones(2))


def test_folder_in_an_entrys_place_is_a_miss_and_the_write_is_skipped(tmp_path, caplog):
    cache = ArrayCache(tmp_path, {"x": 1})
    _entry(cache).mkdir()
    assert cache.get(KEY) is None
    cache.put(KEY, np.ones(2))  # does not raise
    assert cache.write_failures == 1 and "that entry stays uncached" in caplog.text
    cache.put("ab" * 32, np.ones(2))  # other entries are still written
    assert cache.get("ab" * 32) is not None


def test_oversized_entry_is_a_miss(tmp_path, monkeypatch):
    monkeypatch.setattr("benchmark.cache.MAX_ENTRY_BYTES", 100)
    cache = ArrayCache(tmp_path, {"x": 1})
    np.save(_entry(cache), np.ones(64))
    assert cache.get(KEY) is None and cache.repaired == 1


def test_full_disk_degrades_to_uncached_with_one_warning(tmp_path, caplog):
    cache = ArrayCache(tmp_path, {"x": 1})
    full = OSError(errno.ENOSPC, "No space left on device")
    with mock.patch("benchmark.cache._atomic_write_bytes", side_effect=full) as write:
        for i in range(5):
            cache.put(f"{i:02d}" * 32, np.ones(2))  # none raises
    assert write.call_count == 1  # after ENOSPC the cache stops trying
    assert caplog.text.count("carrying on uncached") == 1
    assert cache.get("00" * 32) is None


def test_read_only_cache_folder_degrades_to_uncached(tmp_path, caplog):
    if os.geteuid() == 0:
        pytest.skip("running as root: permissions do not block writes (ENOSPC/EROFS are simulated above)")
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o500)
    cache = ArrayCache(tmp_path / "ro", {"x": 1})
    cache.put(KEY, np.ones(2))
    assert cache.get(KEY) is None and "carrying on uncached" in caplog.text

import numpy as np

from benchmark.cache import ArrayCache


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

"""The contract every registered encoder meets, on short random audio (neural ones at random init).

Adding an encoder = one file + one registry entry + passing this test.
"""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from benchmark.cache import ArrayCache
from benchmark.data import load_dataset
from benchmark.embedding import embed_files
from encoders import registry
from encoders.base import Encoder

#: keyword arguments for write_random_weights that keep test builds quick (same widths, fewer layers)
QUICK_WEIGHTS = {"muq": {"small": True}}

_BUILT: dict[str, Encoder] = {}


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("contract-weights")


def _encoder(name: str, weights_dir) -> Encoder:
    if name not in _BUILT:
        cls = registry.encoder_class(name)
        options = registry.EncoderOptions(batch_size=4)
        if hasattr(cls, "write_random_weights"):
            path = cls.write_random_weights(weights_dir / name, **QUICK_WEIGHTS.get(name, {}))
            options = registry.EncoderOptions(weights=str(path), batch_size=4)
        _BUILT[name] = registry.build(name, options)
    return _BUILT[name]


@pytest.fixture(scope="module")
def odd_files(tmp_path_factory):
    """Short noisy tones at 22.05/44.1/48 kHz, stereo, and one clip shorter than any window (0.2 s)."""
    root = tmp_path_factory.mktemp("contract-audio")
    rng = np.random.default_rng(0)
    specs = {"sr22050.wav": (22050, 1), "sr44100_stereo.wav": (44100, 2), "sr48000.flac": (48000, 1)}
    for name, (sr, channels) in specs.items():
        t = np.arange(int(1.5 * sr)) / sr
        y = 0.3 * np.sin(2 * np.pi * 330 * t)[:, None] + 0.05 * rng.standard_normal((len(t), channels))
        sf.write(root / name, y.astype(np.float32), sr)
    sf.write(root / "short.wav", (0.2 * rng.standard_normal(int(0.2 * 16000))).astype(np.float32), 16000)
    return load_dataset(root, root)


@pytest.mark.parametrize("name", registry.names())
def test_encoder_contract(name, weights_dir, odd_files):
    encoder = _encoder(name, weights_dir)
    card = registry.card(name)
    assert (encoder.sample_rate, encoder.dim) == (card.sample_rate, card.dim)
    assert card.license and card.description and card.captures

    hashes = {f.path: f.key for f in odd_files.refs}  # any unique key works with a disabled cache
    first = embed_files(odd_files.refs, "reference", encoder, ArrayCache(None, {}), hashes, progress=False)
    assert not first.failures, first.failures
    assert set(first.embeddings) == {f.key for f in odd_files.refs}
    for key, vector in first.embeddings.items():
        assert vector.shape == (card.dim,), key
        assert vector.dtype == np.float32 and np.all(np.isfinite(vector)), key

    second = embed_files(odd_files.refs, "reference", encoder, ArrayCache(None, {}), hashes, progress=False)
    for key in first.embeddings:
        np.testing.assert_array_equal(first.embeddings[key], second.embeddings[key], err_msg=key)

    rng = np.random.default_rng(1)
    batch = [rng.standard_normal(int(1.0 * encoder.sample_rate)).astype(np.float32) * 0.1,
             rng.standard_normal(int(0.3 * encoder.sample_rate)).astype(np.float32) * 0.1]
    windows = [w for audio in batch for w in encoder.window.segment(audio, encoder.sample_rate)]
    out = encoder.embed(windows)
    assert out.shape == (len(windows), card.dim) and np.all(np.isfinite(out))

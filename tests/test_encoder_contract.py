"""The contract every registered encoder meets, on short random audio (neural ones at random init).

Adding an encoder = one file + one registry entry + passing this test. The invariants themselves live in
``encoders.contract`` (``run_checks``), so a user can run them on any built encoder; this test runs them on every
registered encoder, plus the harness's own path (decode → embed_files) on odd files.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from benchmark.cache import ArrayCache
from benchmark.data import load_dataset
from benchmark.embedding import embed_files
from encoders import registry
from encoders.base import Encoder, EncoderUnavailable, WeightFreeEncoder
from encoders.contract import CheckResult, failures, run_checks
from encoders.mfcc import MFCCStats

#: keyword arguments for write_random_weights that keep test builds quick (same widths, fewer layers)
QUICK_WEIGHTS = {"muq": {"small": True}}

#: seconds scale of the contract checks' audio (short: the neural encoders run on 2 CPU cores)
CHECK_SECONDS = 0.5


def _marked(name: str):
    """Encoders that build a model architecture are ``slow``; the weight-free ones are not."""
    weight_free = issubclass(registry.encoder_class(name), WeightFreeEncoder)
    return pytest.param(name, marks=() if weight_free else pytest.mark.slow)


@pytest.fixture(scope="module")
def options_for(tmp_path_factory):
    """``options_for(name, **overrides)`` → build options; a neural encoder's random-init weights are written once."""
    root = tmp_path_factory.mktemp("contract-weights")
    written: dict[str, str | None] = {}

    def get(name: str, **overrides) -> registry.EncoderOptions:
        if name not in written:
            cls = registry.encoder_class(name)
            written[name] = (
                str(cls.write_random_weights(root / name, **QUICK_WEIGHTS.get(name, {})))
                if hasattr(cls, "write_random_weights")
                else None
            )
        return registry.EncoderOptions(weights=written[name], batch_size=4, **overrides)

    return get


@pytest.fixture
def encoder(name, options_for):
    built = registry.build(name, options_for(name))
    yield built
    built.close()  # one encoder in memory at a time


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


@pytest.mark.parametrize("name", [_marked(name) for name in registry.names()])
def test_encoder_contract(name, encoder, odd_files):
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
    batch = [
        rng.standard_normal(int(1.0 * encoder.sample_rate)).astype(np.float32) * 0.1,
        rng.standard_normal(int(0.3 * encoder.sample_rate)).astype(np.float32) * 0.1,
    ]
    windows = [w for audio in batch for w in encoder.window.segment(audio, encoder.sample_rate)]
    out = encoder.embed(windows)
    assert out.shape == (len(windows), card.dim) and np.all(np.isfinite(out))

    results = run_checks(encoder, rng_seed=0, seconds=CHECK_SECONDS)
    assert {result.name for result in results} >= {
        "output_shape_dtype",
        "finite",
        "deterministic",
        "input_untouched",
        "batch_equals_single",
        "sliced_batches",
        "shorter_than_window",
        "source_sample_rates",
        "silence",
        "speed",
    }
    assert not failures(results), "\n".join(f"{r.name}: {r.detail}" for r in failures(results))
    speed = next(result for result in results if result.name == "speed")
    assert speed.value is not None and speed.value > 0


@pytest.mark.parametrize(
    "name",
    [_marked(name) for name in registry.names() if not issubclass(registry.encoder_class(name), WeightFreeEncoder)],
)
def test_cuda_without_cuda_is_refused_with_the_fix(name, options_for):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(EncoderUnavailable, match="CUDA is not available.*--device cpu"):
        registry.build(name, options_for(name, device="cuda"))


class _Broken(Encoder):
    """Breaks the contract in ways the checks must notice."""

    card = MFCCStats.card

    def __init__(self, nan_float64: bool = False):
        self.calls, self.nan_float64 = 0, nan_float64

    def embed(self, batch):
        if self.nan_float64:  # wrong dtype, NaN
            return np.full((len(batch), self.dim), np.nan)
        self.calls += 1  # depends on the call count and on the batch; modifies its input in place
        for item in batch:
            item *= 1.0001
        return np.full((len(batch), self.dim), float(len(batch) + self.calls), dtype=np.float32)


def test_run_checks_reports_broken_encoders():
    results = {result.name: result for result in run_checks(_Broken(), seconds=0.2)}
    assert all(isinstance(result, CheckResult) for result in results.values())
    for name in ("deterministic", "input_untouched", "batch_equals_single", "sliced_batches"):
        assert not results[name].passed, name
    assert results["output_shape_dtype"].passed and results["finite"].passed

    results = {result.name: result for result in run_checks(_Broken(nan_float64=True), seconds=0.2)}
    for name in ("output_shape_dtype", "finite", "shorter_than_window", "source_sample_rates", "silence"):
        assert not results[name].passed, name

"""MuQ encoder: the package's own numbers, offline, strict about weights, safe on short audio.

The tests write a random-init MuQ once per module with ``small=True`` (MuQ-large's widths, 2 conformer layers
instead of 12) and load it through the real ``MuQ.from_pretrained`` path.
"""
from __future__ import annotations

import importlib.util
import json
import random
import re
import shutil

import numpy as np
import pretrained_checks as checks
import pytest
from pretrained_checks import music

torch = pytest.importorskip("torch")

from encoders.base import EncoderError, WindowPolicy  # noqa: E402
from encoders.muq import MIN_SAMPLES, MIN_SECONDS, MuQEncoder, _random_config  # noqa: E402
from encoders.registry import EncoderOptions  # noqa: E402
from encoders.weights import ResolvedWeights, WeightsNotFound  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("muq") is None, reason="muq is not installed"),
]
SR = MuQEncoder.card.sample_rate




@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    return MuQEncoder.write_random_weights(tmp_path_factory.mktemp("muq"), small=True)


@pytest.fixture(scope="module")
def encoder(weights_dir):
    return MuQEncoder(EncoderOptions(weights=str(weights_dir), device="cpu"))




def test_default_random_config_is_muq_large():
    config = _random_config(layers=12)
    w2v2 = config.w2v2_config
    assert (config.encoder_dim, config.encoder_depth) == (1024, 12)
    assert (w2v2["num_attention_heads"], w2v2["intermediate_size"]) == (16, 4096)
    assert w2v2["position_embeddings_type"] == "relative"
    assert config.stat == {"melspec_2048_mean": 6.768444971712967, "melspec_2048_std": 18.417922652295623}


def test_writes_a_hub_model_directory(weights_dir):
    assert {"config.json", "model.safetensors"} <= {p.name for p in weights_dir.iterdir()}
    assert json.loads((weights_dir / "config.json").read_text())["encoder_dim"] == 1024


def test_matches_the_package_forward(encoder, weights_dir, network_calls):
    from muq import MuQ

    audio = music(SR, 2.0)
    reference = MuQ.from_pretrained(str(weights_dir)).eval()
    with torch.no_grad():
        expected = reference(torch.from_numpy(audio)[None]).last_hidden_state.mean(dim=1)[0].numpy()

    got = encoder.embed([audio])
    assert got.shape == (1, 1024) and got.dtype == np.float32
    np.testing.assert_allclose(got[0], expected, rtol=0, atol=1e-4)
    assert np.abs(got - encoder.embed([music(SR, 2.0, pitch=330.0, seed=1)])).max() > 1e-4  # not constant
    assert network_calls == []


def test_is_deterministic(encoder):
    audio = music(SR, 1.0)
    assert np.array_equal(encoder.embed([audio]), encoder.embed([audio]))


def test_short_audio_is_zero_padded(encoder):
    too_short = np.zeros(MIN_SAMPLES - 1, dtype=np.float32)
    for audio in (music(SR, 0.1), too_short):
        got = encoder.embed([audio])
        assert got.shape == (1, 1024) and np.isfinite(got).all()
    padded = np.pad(too_short, (0, int(round(MIN_SECONDS * SR)) - too_short.size))
    np.testing.assert_array_equal(encoder.embed([too_short]), encoder.embed([padded]))


def test_refuses_stereo_and_non_finite_input(encoder):
    checks.refuses_stereo_and_non_finite_input(encoder)


def test_non_finite_output_raises(encoder, monkeypatch):
    checks.non_finite_output_raises(encoder, monkeypatch)


def test_batch_of_different_lengths_equals_each_alone(encoder):
    checks.batch_equals_each_alone(encoder, (1.0, 1.5), atol=1e-6)


def test_batch_of_equal_lengths_equals_each_alone(encoder):
    checks.batch_equals_each_alone(encoder, (1.0, 1.0), atol=1e-4)


def test_strict_load_names_the_missing_key(weights_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    state = load_file(weights_dir / "model.safetensors")
    removed = "model.conv.linear.weight"
    del state[removed]
    save_file(state, tmp_path / "model.safetensors")
    shutil.copy(weights_dir / "config.json", tmp_path / "config.json")
    with pytest.raises(EncoderError, match=re.escape(removed)):
        MuQEncoder(EncoderOptions(weights=str(tmp_path), device="cpu"))


def test_build_keeps_the_caller_rng_and_never_downloads(weights_dir, network_calls):
    random.seed(7)
    torch.manual_seed(7)
    expected = random.random(), torch.rand(3)
    random.seed(7)
    torch.manual_seed(7)
    assert MuQEncoder.check_available(EncoderOptions(weights=str(weights_dir))) == f"weights: {weights_dir} (explicit)"
    built = MuQEncoder(EncoderOptions(weights=str(weights_dir), device="cpu", window=WindowPolicy(window_seconds=10.0)))
    assert random.random() == expected[0] and torch.equal(torch.rand(3), expected[1])  # MuQ reseeds both
    assert network_calls == []
    assert built.weights_sha256 == ResolvedWeights(weights_dir, "explicit").sha256()
    assert built.weights_source == str(weights_dir)
    assert built.window.window_seconds == 10.0 and built.window.min_seconds == MIN_SECONDS


def test_missing_weights_say_where_to_put_them(no_weights):
    network_calls = no_weights
    with pytest.raises(WeightsNotFound) as error:
        MuQEncoder.check_available(EncoderOptions())
    for fact in ("config.json", "model.safetensors", "OpenMuQ/MuQ-large-msd-iter", "$MUSICBENCH_WEIGHTS"):
        assert fact in str(error.value)
    with pytest.raises(WeightsNotFound):  # never the package's misleading "missing 'config'" TypeError
        MuQEncoder(EncoderOptions())
    assert network_calls == []

"""Music2Latent encoder: the package's own numbers, offline, strict about weights, safe on short audio.

Every test uses a random-init checkpoint written once per module in the package's own format.
"""
from __future__ import annotations

import importlib.util
import re
from unittest import mock

import numpy as np
import pretrained_checks as checks
import pytest
from pretrained_checks import music

torch = pytest.importorskip("torch")

from encoders.base import EncoderError, WindowPolicy  # noqa: E402
from encoders.music2latent import MIN_SAMPLES, MIN_SECONDS, Music2LatentEncoder  # noqa: E402
from encoders.registry import EncoderOptions  # noqa: E402
from encoders.weights import WeightsNotFound, sha256_file  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("music2latent") is None, reason="music2latent is not installed"),
]
SR = Music2LatentEncoder.card.sample_rate




@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return Music2LatentEncoder.write_random_weights(tmp_path_factory.mktemp("music2latent"))


@pytest.fixture(scope="module")
def encoder(checkpoint):
    return Music2LatentEncoder(EncoderOptions(weights=str(checkpoint), device="cpu"))




def test_writes_the_package_checkpoint_format(checkpoint):
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert checkpoint.name == "music2latent.pt"
    assert list(state) == ["gen_state_dict"]
    assert any(key.startswith("encoder.") for key in state["gen_state_dict"])


@pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning")  # the package's own fp16 autocast
def test_matches_the_package_encode(encoder, checkpoint):
    from music2latent import inference

    audio = music(SR, 2.0)
    with mock.patch.object(inference, "download_model", lambda: None):  # the package would fetch from the hub
        reference = inference.EncoderDecoder(load_path_inference=str(checkpoint), device=torch.device("cpu"))
    expected = reference.encode(audio).mean(dim=-1)[0].numpy()

    got = encoder.embed([audio])
    assert got.shape == (1, 64) and got.dtype == np.float32
    np.testing.assert_allclose(got[0], expected, rtol=0, atol=1e-4)
    assert np.abs(got - encoder.embed([music(SR, 2.0, pitch=330.0, seed=1)])).max() > 1e-4  # not constant


def test_is_deterministic(encoder):
    audio = music(SR, 1.0)
    assert np.array_equal(encoder.embed([audio]), encoder.embed([audio]))


def test_short_audio_is_zero_padded(encoder):
    short = music(SR, 0.1)
    assert short.size < MIN_SAMPLES
    got = encoder.embed([short])
    assert got.shape == (1, 64) and np.isfinite(got).all()
    padded = np.pad(short, (0, int(round(MIN_SECONDS * SR)) - short.size))
    np.testing.assert_array_equal(got, encoder.embed([padded]))


def test_refuses_stereo_and_non_finite_input(encoder):
    checks.refuses_stereo_and_non_finite_input(encoder)


def test_non_finite_output_raises(encoder, monkeypatch):
    checks.non_finite_output_raises(encoder, monkeypatch)


def test_batch_of_different_lengths_equals_each_alone(encoder):
    checks.batch_equals_each_alone(encoder, (1.0, 1.5), atol=1e-6)


def test_batch_of_equal_lengths_equals_each_alone(encoder):
    checks.batch_equals_each_alone(encoder, (1.0, 1.0), atol=1e-5)


def test_strict_load_names_the_missing_key(checkpoint, tmp_path):
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    removed = "encoder.conv_inp.weight"
    del state["gen_state_dict"][removed]
    broken = tmp_path / "music2latent.pt"
    torch.save(state, broken)
    with pytest.raises(EncoderError, match=re.escape(removed)):
        Music2LatentEncoder(EncoderOptions(weights=str(broken), device="cpu"))


def test_build_from_local_weights_never_downloads(checkpoint, network_calls, monkeypatch):
    import music2latent.utils

    downloads = []
    monkeypatch.setattr(music2latent.utils, "hf_hub_download", lambda *a, **k: downloads.append(a or k))
    assert Music2LatentEncoder.check_available(EncoderOptions(weights=str(checkpoint))) == \
        f"weights: {checkpoint} (explicit)"
    built = Music2LatentEncoder(EncoderOptions(weights=str(checkpoint), device="cpu",
                                               window=WindowPolicy(window_seconds=10.0)))
    assert downloads == [] and network_calls == []
    assert built.weights_sha256 == sha256_file(checkpoint)
    assert built.weights_source == str(checkpoint)
    assert built.window.window_seconds == 10.0 and built.window.min_seconds == MIN_SECONDS


def test_missing_weights_say_where_to_put_them(no_weights):
    network_calls = no_weights
    with pytest.raises(WeightsNotFound) as error:
        Music2LatentEncoder.check_available(EncoderOptions())
    for fact in ("music2latent.pt", "SonyCSLParis/music2latent", "$MUSICBENCH_WEIGHTS"):
        assert fact in str(error.value)
    with pytest.raises(WeightsNotFound):
        Music2LatentEncoder(EncoderOptions())
    assert network_calls == []

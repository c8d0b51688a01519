"""CLAP similarity metric: cosine of the CLAP encoder's file embeddings (random-init CLAP checkpoint)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from audio_factory import sine

if importlib.util.find_spec("laion_clap") is None:  # find, not import: encoders.runtime must run first
    pytest.skip("laion_clap is not installed", allow_module_level=True)

import metrics.registry as registry  # noqa: E402
from encoders.registry import EncoderOptions, build  # noqa: E402
from metrics.base import MetricUnavailable  # noqa: E402
from metrics.clap_similarity import ClapSimilarity  # noqa: E402
from metrics.registry import MetricOptions  # noqa: E402

SR = 48000


@pytest.fixture(scope="module")
def weights(random_weights):
    return random_weights("clap")


@pytest.fixture(scope="module")
def metric(weights):
    m = ClapSimilarity(MetricOptions(weights={"clap": str(weights)}, device="cpu"))
    yield m
    m.close()


@pytest.fixture(scope="module")
def encoder(weights):
    """The CLAP encoder as retrieval builds it (independently of the metric)."""
    return build("clap", EncoderOptions(weights=str(weights), device="cpu"))


@pytest.fixture(scope="module")
def clips():
    return {
        "a": sine(440.0, 3.0, SR, amp=0.3, noise=0.05, seed=1),
        "b": sine(220.0, 12.0, SR, amp=0.3, noise=0.05, seed=2),
    }


@pytest.fixture(scope="module")
def features(metric, clips):
    return {name: metric.file_features(audio) for name, audio in clips.items()}


@pytest.mark.slow
def test_equals_cosine_of_the_encoder_embeddings(features, clips, encoder):
    a, b = (encoder.embed_audio(clips[name]) for name in ("a", "b"))
    np.testing.assert_allclose(features["a"], a, atol=1e-6)
    np.testing.assert_allclose(features["b"], b, atol=1e-6)
    expected = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    assert ClapSimilarity.columns == ("clap_sim",)
    assert ClapSimilarity().pair_scores(features["a"], features["b"])["clap_sim"] == pytest.approx(expected, abs=1e-6)


@pytest.mark.slow
def test_symmetric_and_one_for_identical_audio(metric, features, clips):
    ab = metric.pair_scores(features["a"], features["b"])["clap_sim"]
    ba = metric.pair_scores(features["b"], features["a"])["clap_sim"]
    assert ab == ba and -1.0 <= ab <= 1.0
    again = metric.file_features(clips["a"].copy())
    assert metric.pair_scores(features["a"], again)["clap_sim"] == pytest.approx(1.0, abs=1e-6)
    assert metric.pair_scores(features["a"], features["a"])["clap_sim"] == 1.0


@pytest.mark.slow
def test_cache_identity_is_the_encoders(metric, encoder, weights):
    assert metric.cache_identity() == encoder.cache_identity()
    assert metric.cache_identity()["kind"] == "embedding"
    fresh = ClapSimilarity(MetricOptions(weights={"clap": str(weights)}, device="cpu"))
    assert fresh.cache_identity() == encoder.cache_identity() and fresh._encoder is None  # no model loaded for it


@pytest.mark.slow
def test_identity_without_building_matches_a_windowed_build(weights):
    from encoders.base import WindowPolicy
    from encoders.clap import ClapEncoder

    options = EncoderOptions(weights=str(weights), device="cpu", window=WindowPolicy(5.0, 2.5))
    assert ClapEncoder.identity_for(options) == build("clap", options).identity()


@pytest.mark.slow
def test_unembeddable_file_is_a_value_error(metric):
    with pytest.raises(ValueError):
        metric.file_features(np.zeros(0, np.float32))
    with pytest.raises(ValueError):
        metric.file_features(np.full(SR, np.nan, np.float32))


def test_zero_vector_gives_nan_not_a_number():
    assert np.isnan(ClapSimilarity().pair_scores(np.zeros(4), np.ones(4))["clap_sim"])


def test_unavailable_without_weights(no_weights, tmp_path):
    metric = ClapSimilarity(MetricOptions())
    with pytest.raises(MetricUnavailable, match="630k-audioset-best.pt"):
        metric.check_available()
    missing = tmp_path / "missing.pt"
    with pytest.raises(MetricUnavailable, match=str(missing)):
        ClapSimilarity(MetricOptions(weights={"clap": str(missing)})).check_available()
    assert metric._encoder is None and no_weights == []


@pytest.mark.slow
def test_registry_select(no_weights, weights, monkeypatch):
    monkeypatch.setattr(registry, "PAIR_METRICS", {"clap_sim": "metrics.clap_similarity:ClapSimilarity"})
    selected, skipped = registry.select("auto", MetricOptions())
    assert selected == [] and "630k-audioset-best.pt" in skipped["clap_sim"]
    with pytest.raises(MetricUnavailable, match="metric 'clap_sim' cannot run"):
        registry.select("clap_sim", MetricOptions())
    selected, skipped = registry.select("clap_sim", MetricOptions(weights={"clap": str(weights)}))
    assert [m.name for m in selected] == ["clap_sim"] and selected[0]._encoder is None
    assert no_weights == []

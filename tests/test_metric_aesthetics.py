"""Audiobox Aesthetics metric: the package's own predictor on a random-init checkpoint in the package's format."""

from __future__ import annotations

import importlib.util
import pickle

import numpy as np
import pytest
from audio_factory import sine

if importlib.util.find_spec("audiobox_aesthetics") is None:  # find, not import: encoders.runtime must run first
    pytest.skip("audiobox_aesthetics is not installed", allow_module_level=True)

import metrics.registry as registry  # noqa: E402
from encoders.weights import sha256_file  # noqa: E402
from metrics.aesthetics import AXES, CHECKPOINT_FILE, Aesthetics  # noqa: E402
from metrics.base import MetricUnavailable  # noqa: E402
from metrics.registry import MetricOptions  # noqa: E402

SR = 16000
#: emitted by torch inside the package's WavLM attention on every first forward; harmless
pytestmark = pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask:UserWarning")


def _audio(seconds: float, seed: int) -> np.ndarray:
    return sine(220 + 110 * seed, seconds, SR, amp=0.3, noise=0.05, seed=seed)


@pytest.fixture(scope="module")
def checkpoint(random_weights):
    return random_weights("aesthetics")


@pytest.fixture(scope="module")
def metric(checkpoint):
    # batch_size=1: one 10 s window per predictor call, so the 12 s clip is scored in two chunks (10 s + 2 s)
    # cut at the predictor's own window boundary and recombined; the oracle scores it in one call
    m = Aesthetics(MetricOptions(weights={"aesthetics": str(checkpoint)}, device="cpu", batch_size=1))
    yield m
    m.close()


@pytest.fixture(scope="module")
def oracle(checkpoint):
    """The package's own predictor, built by the package's own code on the same file."""
    from encoders.runtime import prepare_torch_stack

    prepare_torch_stack()
    from audiobox_aesthetics.infer import AesPredictor

    predictor = AesPredictor(checkpoint_pth=str(checkpoint), data_col="wav")

    def score(*clips: np.ndarray) -> np.ndarray:
        """One batched call of the package's own inference on several clips: one row of scores per clip."""
        import torch

        rows = predictor.forward([{"wav": torch.from_numpy(a).unsqueeze(0), "sample_rate": SR} for a in clips])
        return np.array([[row[axis] for axis in AXES] for row in rows])

    return score


@pytest.fixture(scope="module")
def clips():
    return {"short": _audio(3.0, 1), "long": _audio(12.0, 2)}


@pytest.fixture(scope="module")
def features(metric, clips):
    return {name: metric.file_features(audio) for name, audio in clips.items()}


@pytest.mark.slow
def test_checkpoint_is_in_the_package_format(checkpoint):
    import torch

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    assert checkpoint.name == CHECKPOINT_FILE
    assert set(ckpt) == {"state_dict", "model_cfg", "target_transform"}
    assert all(key.startswith("model.") for key in ckpt["state_dict"])
    assert set(ckpt["target_transform"]) == set(AXES)


@pytest.mark.slow
def test_file_scores_equal_the_package_predictor(features, clips, oracle):
    expected = dict(zip(clips, oracle(*clips.values())))
    for name in clips:
        assert features[name].dtype == np.float64 and features[name].shape == (4,)
        np.testing.assert_allclose(features[name], expected[name], atol=1e-4, err_msg=name)
    assert not np.allclose(features["short"], features["long"])


@pytest.mark.slow
def test_file_values_and_pair_scores(metric, features):
    t, r = features["short"], features["long"]
    values = metric.file_values(t)
    assert tuple(values) == metric.file_value_names == ("aes_ce", "aes_cu", "aes_pc", "aes_pq")
    assert values["aes_pq"] == pytest.approx(t[3])
    scores = metric.pair_scores(t, r)
    assert tuple(scores) == tuple(sorted(scores, key=list(metric.columns).index))
    assert set(scores) == set(metric.columns) and len(metric.columns) == 12
    for i, axis in enumerate(a.lower() for a in AXES):
        assert scores[f"aes_{axis}_target"] == pytest.approx(t[i])
        assert scores[f"aes_{axis}_ref"] == pytest.approx(r[i])
        assert scores[f"aes_{axis}_delta"] == pytest.approx(t[i] - r[i])


@pytest.mark.slow
def test_identity_names_weights_hash_and_package(metric, checkpoint):
    identity = metric.identity()
    assert identity["weights_sha256"] == sha256_file(checkpoint)
    assert identity["package"] == "audiobox-aesthetics" and identity["package_version"]
    assert metric.cache_identity()["weights_sha256"] == identity["weights_sha256"]


@pytest.mark.slow
def test_silence_and_very_short_audio_are_scored_and_empty_is_refused(metric):
    assert np.isfinite(metric.file_features(np.zeros(10, np.float32))).all()  # 10 samples of digital silence
    with pytest.raises(ValueError, match="empty"):
        metric.file_features(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        metric.file_features(np.full(SR, np.nan, np.float32))


@pytest.mark.slow
def test_non_finite_model_output_raises_value_error(metric, clips, monkeypatch):
    import torch

    model = metric._load().model

    def nan_heads(batch):  # what a diverged checkpoint outputs; the package's own aggregation runs on it
        return {axis: torch.full((batch["wav"].shape[0],), float("nan")) for axis in AXES}

    monkeypatch.setattr(model, "forward", nan_heads)
    with pytest.raises(ValueError, match="non-finite"):
        metric.file_features(clips["short"])


def test_no_weights_is_unavailable_with_the_fix_and_no_network(no_weights):
    metric = Aesthetics(MetricOptions())
    with pytest.raises(MetricUnavailable) as error:
        metric.check_available()
    message = str(error.value)
    assert CHECKPOINT_FILE in message and "$MUSICBENCH_WEIGHTS/aesthetics/" in message
    assert "facebook/audiobox-aesthetics" in message
    with pytest.raises(MetricUnavailable):  # scoring never falls back to the hub either
        metric.file_features(_audio(1.0, 0))
    assert no_weights == []


def test_missing_explicit_path_is_unavailable_never_the_hub(no_weights, tmp_path):
    missing = tmp_path / "nowhere" / CHECKPOINT_FILE
    metric = Aesthetics(MetricOptions(weights={"aesthetics": str(missing)}))
    with pytest.raises(MetricUnavailable, match=str(missing)):
        metric.check_available()
    with pytest.raises(MetricUnavailable, match=str(missing)):
        metric.file_features(_audio(1.0, 0))
    assert no_weights == []


def test_checkpoint_is_loaded_weights_only(no_weights, tmp_path):
    """A checkpoint that needs full unpickling is refused (nothing in it is executed)."""
    path = tmp_path / CHECKPOINT_FILE
    with open(path, "wb") as handle:
        pickle.dump({"state_dict": {}, "model_cfg": _Evil(), "target_transform": {}}, handle, protocol=2)
    metric = Aesthetics(MetricOptions(weights={"aesthetics": str(path)}))
    assert "explicit" in metric.check_available()
    with pytest.raises(MetricUnavailable, match="cannot load"):
        metric.file_features(_audio(1.0, 0))
    assert not _Evil.ran and no_weights == []


class _Evil:
    ran = False

    def __reduce__(self):
        return (_Evil._run, ())

    @staticmethod
    def _run():
        _Evil.ran = True
        return {}


def test_constructor_is_cheap(no_weights):
    metric = Aesthetics(MetricOptions(weights={"aesthetics": "/does/not/exist.pt"}))
    assert metric._predictor is None and metric._resolved is None


def test_registry_select(no_weights, monkeypatch):
    monkeypatch.setattr(registry, "PAIR_METRICS", {"aesthetics": "metrics.aesthetics:Aesthetics"})
    selected, skipped = registry.select("auto", MetricOptions())
    assert selected == [] and CHECKPOINT_FILE in skipped["aesthetics"]
    with pytest.raises(MetricUnavailable, match="metric 'aesthetics' cannot run"):
        registry.select("aesthetics", MetricOptions())
    assert no_weights == []


@pytest.mark.slow
def test_registry_select_with_weights(checkpoint, monkeypatch):
    monkeypatch.setattr(registry, "PAIR_METRICS", {"aesthetics": "metrics.aesthetics:Aesthetics"})
    selected, skipped = registry.select("aesthetics", MetricOptions(weights={"aesthetics": str(checkpoint)}))
    assert [m.name for m in selected] == ["aesthetics"] and skipped == {}
    assert selected[0]._predictor is None  # selection loads no model

"""``hf:`` encoders (issue 19) on a random-init, 2-layer wav2vec2-style model written with ``save_pretrained``, so the
real loading path (``AutoFeatureExtractor`` + ``AutoModel``, ``local_files_only``) runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import dataset_args
from click.testing import CliRunner

from benchmark.cli import main
from encoders import hf, registry
from encoders.base import EncoderUnavailable

pytestmark = pytest.mark.slow  # each test builds a (tiny) transformers model

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A seeded random-init wav2vec2 (hidden 32, 2 layers, a 2-layer conv front end) + its feature extractor."""
    from encoders.runtime import prepare_torch_stack
    from encoders.torch_utils import seeded_random_init

    prepare_torch_stack()
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    directory = tmp_path_factory.mktemp("hf") / "tiny-wav2vec2"
    config = Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16),
        conv_stride=(5, 2),
        conv_kernel=(10, 3),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        vocab_size=8,
    )
    with seeded_random_init(0):
        Wav2Vec2Model(config).save_pretrained(directory)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True, return_attention_mask=True).save_pretrained(
        directory
    )
    return directory


def _audio(seconds: float, seed: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * 16000))).astype(np.float32)


def _direct(directory, audio: np.ndarray, layer: str):
    """What the model gives when called directly, as its documentation shows."""
    import torch
    from transformers import AutoFeatureExtractor, AutoModel

    extractor = AutoFeatureExtractor.from_pretrained(directory)
    model = AutoModel.from_pretrained(directory).eval()
    with torch.no_grad():
        output = model(**extractor(audio, sampling_rate=16000, return_tensors="pt"), output_hidden_states=True)
    if layer == "last":
        hidden = output.last_hidden_state
    elif layer == "mean":
        hidden = torch.stack(output.hidden_states).mean(dim=0)
    else:
        hidden = output.hidden_states[int(layer)]
    return hidden.mean(dim=1)[0].numpy()


def test_equals_automodel_called_directly_and_honours_the_layer(tiny_model):
    audio = _audio(1.3, 1)  # shorter than the 10 s window: one segment, the whole clip
    got = {}
    for layer in ("last", "0", "1", "2", "mean"):
        name = hf.with_layer(f"hf:{tiny_model}", layer)
        encoder = registry.build(name, registry.EncoderOptions(batch_size=4))
        assert encoder.card.extra["hf_layer"] == layer
        got[layer] = encoder.embed_audio(audio)
        np.testing.assert_allclose(got[layer], _direct(tiny_model, audio, layer), atol=1e-5, rtol=0, err_msg=layer)
        encoder.close()
    assert not np.allclose(got["0"], got["1"], atol=1e-3)  # the layers differ, so the choice is visible
    assert not np.allclose(got["1"], got["mean"], atol=1e-3)


def test_the_model_card_comes_from_the_files(tiny_model):
    encoder = registry.build(f"hf:{tiny_model}:layer-1")
    card = encoder.card
    assert (card.sample_rate, card.dim) == (16000, 32)
    assert card.name == f"hf:{tiny_model.resolve()}:layer-1"
    assert card.extra["hf_num_layers"] == 2 and card.extra["hf_model_type"] == "wav2vec2"
    assert card.extra["hf_revision"] == "local" and card.package == "transformers"
    assert card.window.window_seconds == 10.0 and card.window.min_seconds == pytest.approx(0.002)  # 20 samples
    assert len(encoder.weights_sha256) == 64
    assert "hidden state 1 of 2" in card.description


def test_a_layer_the_model_does_not_have_and_remote_code_are_refused(tiny_model, tmp_path):
    with pytest.raises(EncoderUnavailable, match="layer 5 does not exist; the model has 2 layers"):
        registry.build(f"hf:{tiny_model}:layer-5")
    custom = tmp_path / "custom"
    shutil.copytree(tiny_model, custom)
    config = json.loads((custom / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_custom.CustomModel"}
    (custom / "config.json").write_text(json.dumps(config))
    ok, why = registry.availability(f"hf:{custom}")
    assert not ok and "--trust-remote-code" in why
    assert registry.availability(f"hf:{custom}", registry.EncoderOptions(trust_remote_code=True))[0]
    with pytest.raises(ValueError, match="--hf-layer top"):
        hf.with_layer(f"hf:{custom}", "top")


def test_a_repository_in_the_hf_cache_resolves_offline_with_its_revision(tiny_model, no_weights, monkeypatch):
    import huggingface_hub.constants

    repo = "someorg/tiny-wav2vec2"
    cache = huggingface_hub.constants.HF_HUB_CACHE
    root = Path(cache) / "models--someorg--tiny-wav2vec2"
    shutil.copytree(tiny_model, root / "snapshots" / COMMIT)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(COMMIT)
    encoder = registry.build(f"hf:{repo}")
    assert encoder.card.weights_id == f"{repo}@{COMMIT}" and encoder.card.extra["hf_revision"] == COMMIT
    audio = _audio(0.8, 2)
    np.testing.assert_allclose(encoder.embed_audio(audio), _direct(tiny_model, audio, "last"), atol=1e-5)
    assert no_weights == []  # no socket was connected


def test_missing_weights_say_what_to_download_and_touch_no_network(no_weights, tmp_path):
    ok, why = registry.availability("hf:someorg/not-downloaded")
    assert not ok
    assert "huggingface-cli download someorg/not-downloaded" in why and "--allow-download" in why
    with pytest.raises(EncoderUnavailable, match="was not found offline"):
        registry.build("hf:someorg/not-downloaded")
    result = CliRunner().invoke(main, ["check-encoder", "hf:someorg/not-downloaded"])
    assert result.exit_code == 1 and "huggingface-cli download someorg/not-downloaded" in result.output
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text('{"model_type": "wav2vec2", "hidden_size": 32}')
    ok, why = registry.availability(f"hf:{partial}")
    assert not ok and "preprocessor_config.json" in why
    assert no_weights == []  # no socket was connected


def test_run_with_an_hf_encoder_and_hf_layer(tiny_model, tiny_dataset):
    import mlflow

    result = CliRunner().invoke(
        main,
        [
            "run",
            "--encoder",
            f"hf:{tiny_model}",
            "--hf-layer",
            "1",
            *dataset_args(tiny_dataset, tiny_dataset["root"] / "cache"),
            "--experiment",
            "hf-run",
        ],
    )
    assert result.exit_code == 0, result.output
    run = mlflow.search_runs(experiment_names=["hf-run"]).iloc[0]
    assert run["tags.musicbench.encoder"] == f"hf:{tiny_model.resolve()}:layer-1"
    assert run["params.encoder_hf_layer"] == "1" and run["params.encoder_dim"] == "32"
    assert run["params.trust_remote_code"] == "False"

    result = CliRunner().invoke(main, ["run", "--encoder", "mfcc", "--hf-layer", "1", "--refs", "x", "--targets", "y"])
    assert result.exit_code == 2 and "applies to hf: encoders only" in result.output

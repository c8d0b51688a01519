"""``--precision fp32|bf16``: the opt-in bf16 autocast of neural encoders.

bf16 embeddings agree with fp32 ones (cosine ≥ 0.9999 on the same random-init weights); precision is part of the
cache identity (fp32 identities are what they were before the option existed), logged as a param, offered by the
CLI and the MLproject entry points; encoders that do not offer bf16 refuse it at the edge, saying why.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from benchmark.cli import main
from benchmark.config import RunConfig
from encoders import registry
from encoders.base import EncoderUnavailable
from encoders.registry import EncoderOptions


def fake_clap_weights(tmp_path):
    """A file where CLAP's checkpoint belongs: enough for ``identity_for``, which hashes it and loads nothing."""
    path = tmp_path / "clap" / "630k-audioset-best.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not really a checkpoint")
    return path


def test_precision_is_part_of_the_cache_identity_and_fp32_keeps_the_old_one(tmp_path):
    cls = registry.encoder_class("clap")
    weights = str(fake_clap_weights(tmp_path))
    fp32 = cls.identity_for(EncoderOptions(weights=weights, precision="fp32"))
    bf16 = cls.identity_for(EncoderOptions(weights=weights, precision="bf16"))
    assert fp32 != bf16 and bf16["precision"] == "bf16"
    assert "precision" not in fp32  # an fp32 cache written before --precision existed is still found
    assert fp32 == cls.make_identity(cls.card, fp32["weights_sha256"])


def test_precision_is_a_config_field_logged_as_a_param(tmp_path):
    config = RunConfig(encoder="clap", refs=tmp_path, targets=tmp_path, precision="bf16")
    assert config.as_params()["precision"] == "bf16"
    assert RunConfig(encoder="mfcc", refs=tmp_path, targets=tmp_path).as_params()["precision"] == "fp32"
    with pytest.raises(ValueError, match="precision"):
        RunConfig(encoder="clap", refs=tmp_path, targets=tmp_path, precision="fp16")


@pytest.mark.slow
def test_a_run_logs_its_precision(run_on_tiny):
    from mlflow.tracking import MlflowClient

    run_id = run_on_tiny("precision-param")
    assert MlflowClient().get_run(run_id).data.params["precision"] == "fp32"


@pytest.mark.parametrize("name", ["mfcc", "chroma"])
def test_weight_free_encoders_refuse_bf16_saying_it_applies_to_neural_encoders(name):
    with pytest.raises(EncoderUnavailable, match="weight-free") as refused:
        registry.build(name, EncoderOptions(precision="bf16"))
    assert "clap" in str(refused.value) and "--precision fp32" in str(refused.value)
    assert registry.build(name, EncoderOptions(precision="fp32")).name == name
    assert registry.availability(name, EncoderOptions(precision="bf16"))[0] is False


@pytest.mark.parametrize("name", ["crepe", "muq", "music2latent"])
def test_models_whose_bf16_was_not_checked_refuse_it(name):
    with pytest.raises(EncoderUnavailable, match="not checked against fp32"):
        registry.check_precision(name, EncoderOptions(precision="bf16"))


def test_which_encoders_offer_bf16():
    assert [name for name in registry.names() if "bf16" in registry.precisions(name)] == ["clap", "clap-music"]
    assert all("fp32" in registry.precisions(name) for name in registry.names())


def test_cli_refuses_bf16_for_a_weight_free_encoder_at_the_edge(tiny_dataset):
    common = ["--refs", str(tiny_dataset["refs"]), "--targets", str(tiny_dataset["targets"]), "--no-progress"]
    result = CliRunner().invoke(main, ["run", "--encoder", "mfcc", "--precision", "bf16", *common])
    assert result.exit_code == 2, result.output
    assert "weight-free" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["suite", "--encoders", "mfcc,clap,chroma", "--precision", "bf16", *common])
    assert result.exit_code == 2, result.output
    assert "not offered by mfcc, chroma" in result.output


def test_cli_option_and_mlproject_parameter_exist():
    from pathlib import Path

    for command in ("run", "suite"):
        result = CliRunner().invoke(main, [command, "--help"])
        assert "--precision [fp32|bf16]" in result.output
    project = yaml.safe_load((Path(__file__).resolve().parent.parent / "MLproject").read_text())
    for entry in ("main", "suite"):
        point = project["entry_points"][entry]
        assert point["parameters"]["precision"]["default"] == "fp32"
        assert "--precision {precision}" in point["command"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_bf16_agrees_with_fp32_on_the_same_weights(random_weights, caplog, monkeypatch):
    """On a CPU without native bf16 this is slow (emulated bf16) and the encoder says so in a warning."""
    from audio_factory import melody

    from encoders import pretrained

    weights = str(random_weights("clap"))
    fp32 = registry.build("clap", EncoderOptions(weights=weights, device="cpu"))
    monkeypatch.setattr(pretrained, "native_bf16", lambda device: False)
    with caplog.at_level(logging.WARNING, logger="encoders.pretrained"):
        bf16 = registry.build("clap", EncoderOptions(weights=weights, device="cpu", precision="bf16"))
    assert "no native bfloat16" in caplog.text
    clips = [melody(seconds, 48000, seed=seed) for seed, seconds in enumerate((2.0, 3.5))]
    a, b = fp32.embed(clips), bf16.embed(clips)
    assert b.dtype == np.float32 and np.isfinite(b).all()
    cosine = (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() >= 0.9999, cosine
    assert not np.array_equal(a, b)  # it did compute in bf16
    assert bf16.identity() != fp32.identity() and bf16.cache_identity()["precision"] == "bf16"

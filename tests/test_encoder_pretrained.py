"""MuQ and Music2Latent encoders: the packages' own numbers, offline, strict about weights, safe on short audio.

What both share (``PretrainedEncoder``: input checks, batching, padding, strict loading, offline resolution) is
tested once, parametrized over both; what is specific to one (its checkpoint format, its package's reference
forward) is tested for that one. Random-init weights are written once per module in each package's own format:
MuQ with ``small=True`` (MuQ-large's widths, 2 conformer layers instead of 12), loaded through the real
``MuQ.from_pretrained`` path; Music2Latent as the package's ``{"gen_state_dict": …}`` checkpoint.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import random
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import numpy as np
import pretrained_checks as checks
import pytest
from pretrained_checks import music

from encoders import muq as muq_module
from encoders import music2latent as m2l_module
from encoders.base import EncoderError, WindowPolicy
from encoders.muq import MuQEncoder
from encoders.music2latent import Music2LatentEncoder
from encoders.pretrained import PretrainedEncoder
from encoders.registry import EncoderOptions
from encoders.weights import ResolvedWeights, WeightsNotFound, sha256_file


def _break_muq(weights: Path, into: Path) -> tuple[Path, str]:
    from safetensors.torch import load_file, save_file

    state = load_file(weights / "model.safetensors")
    removed = "model.conv.linear.weight"
    del state[removed]
    save_file(state, into / "model.safetensors")
    shutil.copy(weights / "config.json", into / "config.json")
    return into, removed


def _break_music2latent(weights: Path, into: Path) -> tuple[Path, str]:
    import torch

    state = torch.load(weights, map_location="cpu", weights_only=True)
    removed = "encoder.conv_inp.weight"
    del state["gen_state_dict"][removed]
    broken = into / "music2latent.pt"
    torch.save(state, broken)
    return broken, removed


@dataclass(frozen=True)
class Spec:
    cls: type[PretrainedEncoder]
    min_samples: int
    min_seconds: float
    too_short: Callable[[int], np.ndarray]  # audio below the model's shortest input
    equal_length_atol: float  # equal lengths share a forward pass: batched matmuls round differently
    break_weights: Callable[[Path, Path], tuple[Path, str]]  # (weights, folder) → (broken weights, removed key)
    missing_weights_facts: tuple[str, ...]
    weights_kwargs: dict = field(default_factory=dict)
    downloader: tuple[str, str] | None = None  # a package function that fetches from the hub

    @property
    def sample_rate(self) -> int:
        return self.cls.card.sample_rate


SPECS = {
    "muq": Spec(
        MuQEncoder,
        muq_module.MIN_SAMPLES,
        muq_module.MIN_SECONDS,
        lambda sr: np.zeros(muq_module.MIN_SAMPLES - 1, dtype=np.float32),
        1e-4,
        _break_muq,
        ("config.json", "model.safetensors", "OpenMuQ/MuQ-large-msd-iter", "$MUSICBENCH_WEIGHTS"),
        weights_kwargs={"small": True},
    ),
    "music2latent": Spec(
        Music2LatentEncoder,
        m2l_module.MIN_SAMPLES,
        m2l_module.MIN_SECONDS,
        lambda sr: music(sr, 0.1),
        1e-5,
        _break_music2latent,
        ("music2latent.pt", "SonyCSLParis/music2latent", "$MUSICBENCH_WEIGHTS"),
        downloader=("music2latent.utils", "hf_hub_download"),
    ),
}


def _param(name: str):
    module = SPECS[name].cls.import_name()
    return pytest.param(
        name, marks=pytest.mark.skipif(importlib.util.find_spec(module) is None, reason=f"{module} is not installed")
    )


@pytest.fixture(params=[_param(name) for name in SPECS])
def name(request) -> str:
    return request.param


@pytest.fixture
def spec(name) -> Spec:
    return SPECS[name]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """``written(name)`` → random-init weights of that model, written once per module."""
    paths: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in paths:
            spec = SPECS[name]
            paths[name] = spec.cls.write_random_weights(tmp_path_factory.mktemp(name), **spec.weights_kwargs)
        return paths[name]

    return get


@pytest.fixture(scope="module")
def built(written):
    """``built(name)`` → that model's encoder on its random-init weights (CPU), built once per module."""
    encoders: dict[str, PretrainedEncoder] = {}

    def get(name: str) -> PretrainedEncoder:
        if name not in encoders:
            encoders[name] = SPECS[name].cls(EncoderOptions(weights=str(written(name)), device="cpu"))
        return encoders[name]

    yield get
    for encoder in encoders.values():
        encoder.close()


@pytest.fixture
def weights(name, written) -> Path:
    return written(name)


@pytest.fixture
def encoder(name, built) -> PretrainedEncoder:
    return built(name)


# ---- what both share -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_is_deterministic(encoder, spec):
    audio = music(spec.sample_rate, 1.0)
    assert np.array_equal(encoder.embed([audio]), encoder.embed([audio]))


@pytest.mark.slow
def test_short_audio_is_zero_padded(encoder, spec):
    sr, dim = spec.sample_rate, encoder.dim
    too_short = spec.too_short(sr)
    assert too_short.size < spec.min_samples
    for audio in (music(sr, 0.1), too_short):
        got = encoder.embed([audio])
        assert got.shape == (1, dim) and np.isfinite(got).all()
    padded = np.pad(too_short, (0, int(round(spec.min_seconds * sr)) - too_short.size))
    np.testing.assert_array_equal(encoder.embed([too_short]), encoder.embed([padded]))


@pytest.mark.slow
def test_refuses_stereo_and_non_finite_input(encoder):
    checks.refuses_stereo_and_non_finite_input(encoder)


@pytest.mark.slow
def test_non_finite_output_raises(encoder, monkeypatch):
    checks.non_finite_output_raises(encoder, monkeypatch)


@pytest.mark.slow
def test_batch_of_different_lengths_equals_each_alone(encoder):
    checks.batch_equals_each_alone(encoder, (1.0, 1.5), atol=1e-6)


@pytest.mark.slow
def test_batch_of_equal_lengths_equals_each_alone(encoder, spec):
    checks.batch_equals_each_alone(encoder, (1.0, 1.0), atol=spec.equal_length_atol)


@pytest.mark.slow
def test_strict_load_names_the_missing_key(spec, weights, tmp_path):
    broken, removed = spec.break_weights(weights, tmp_path)
    with pytest.raises(EncoderError, match=re.escape(removed)):
        spec.cls(EncoderOptions(weights=str(broken), device="cpu"))


@pytest.mark.slow
def test_build_keeps_the_caller_rng_and_never_downloads(spec, weights, network_calls, monkeypatch):
    import torch

    downloads = []
    if spec.downloader:
        module, function = spec.downloader
        monkeypatch.setattr(importlib.import_module(module), function, lambda *a, **k: downloads.append(a or k))
    random.seed(7)
    torch.manual_seed(7)
    expected = random.random(), torch.rand(3)
    random.seed(7)
    torch.manual_seed(7)
    assert spec.cls.check_available(EncoderOptions(weights=str(weights))) == f"weights: {weights} (explicit)"
    built = spec.cls(EncoderOptions(weights=str(weights), device="cpu", window=WindowPolicy(window_seconds=10.0)))
    assert random.random() == expected[0] and torch.equal(torch.rand(3), expected[1])  # MuQ reseeds both
    assert downloads == [] and network_calls == []
    assert built.weights_sha256 == ResolvedWeights(weights, "explicit").sha256()
    if weights.is_file():
        assert built.weights_sha256 == sha256_file(weights)
    assert built.weights_source == str(weights)
    assert built.window.window_seconds == 10.0 and built.window.min_seconds == spec.min_seconds


def test_missing_weights_say_where_to_put_them(spec, no_weights):
    network_calls = no_weights
    with pytest.raises(WeightsNotFound) as error:
        spec.cls.check_available(EncoderOptions())
    for fact in spec.missing_weights_facts:
        assert fact in str(error.value)
    with pytest.raises(WeightsNotFound):  # MuQ: never the package's misleading "missing 'config'" TypeError
        spec.cls(EncoderOptions())
    assert network_calls == []


# ---- MuQ ---------------------------------------------------------------------------------------------------------
muq_installed = pytest.mark.skipif(importlib.util.find_spec("muq") is None, reason="muq is not installed")


@muq_installed
def test_default_random_config_is_muq_large():
    config = muq_module._random_config(layers=12)
    w2v2 = config.w2v2_config
    assert (config.encoder_dim, config.encoder_depth) == (1024, 12)
    assert (w2v2["num_attention_heads"], w2v2["intermediate_size"]) == (16, 4096)
    assert w2v2["position_embeddings_type"] == "relative"
    assert config.stat == {"melspec_2048_mean": 6.768444971712967, "melspec_2048_std": 18.417922652295623}


@muq_installed
@pytest.mark.slow
def test_muq_writes_a_hub_model_directory(written):
    weights_dir = written("muq")
    assert {"config.json", "model.safetensors"} <= {p.name for p in weights_dir.iterdir()}
    assert json.loads((weights_dir / "config.json").read_text())["encoder_dim"] == 1024


@muq_installed
@pytest.mark.slow
def test_muq_matches_the_package_forward(written, built, network_calls):
    import torch
    from muq import MuQ

    sr, encoder, weights_dir = MuQEncoder.card.sample_rate, built("muq"), written("muq")
    audio = music(sr, 2.0)
    reference = MuQ.from_pretrained(str(weights_dir)).eval()
    with torch.no_grad():
        expected = reference(torch.from_numpy(audio)[None]).last_hidden_state.mean(dim=1)[0].numpy()

    got = encoder.embed([audio])
    assert got.shape == (1, 1024) and got.dtype == np.float32
    np.testing.assert_allclose(got[0], expected, rtol=0, atol=1e-4)
    assert np.abs(got - encoder.embed([music(sr, 2.0, pitch=330.0, seed=1)])).max() > 1e-4  # not constant
    assert network_calls == []


# ---- Music2Latent ------------------------------------------------------------------------------------------------
m2l_installed = pytest.mark.skipif(
    importlib.util.find_spec("music2latent") is None, reason="music2latent is not installed"
)


@m2l_installed
@pytest.mark.slow
def test_music2latent_writes_the_package_checkpoint_format(written):
    import torch

    checkpoint = written("music2latent")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert checkpoint.name == "music2latent.pt"
    assert list(state) == ["gen_state_dict"]
    assert any(key.startswith("encoder.") for key in state["gen_state_dict"])


@m2l_installed
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning")  # the package's own fp16 autocast
def test_music2latent_matches_the_package_encode(written, built):
    import torch
    from music2latent import inference

    sr, encoder, checkpoint = Music2LatentEncoder.card.sample_rate, built("music2latent"), written("music2latent")
    audio = music(sr, 2.0)
    with mock.patch.object(inference, "download_model", lambda: None):  # the package would fetch from the hub
        reference = inference.EncoderDecoder(load_path_inference=str(checkpoint), device=torch.device("cpu"))
    expected = reference.encode(audio).mean(dim=-1)[0].numpy()

    got = encoder.embed([audio])
    assert got.shape == (1, 64) and got.dtype == np.float32
    np.testing.assert_allclose(got[0], expected, rtol=0, atol=1e-4)
    assert np.abs(got - encoder.embed([music(sr, 2.0, pitch=330.0, seed=1)])).max() > 1e-4  # not constant


# --- fast loading: memory-mapped checkpoints and assigned tensors ---------------------------------------------


@pytest.mark.parametrize("zip_format", [True, False])
def test_mmap_reading_equals_plain_reading_in_both_checkpoint_formats(tmp_path, zip_format):
    """``mmap=True`` maps torch's zip format and reads the legacy (pre-zip) format as before: same tensors."""
    import torch

    from encoders.weights import load_torch_checkpoint

    state = {"w": torch.randn(3, 4), "b": torch.arange(5)}
    path = tmp_path / "checkpoint.pt"
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    for mmap in (False, True):
        loaded = load_torch_checkpoint(path, "test", mmap=mmap)
        assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)


def test_assigned_loading_equals_copying_and_falls_back_when_dtypes_differ(tmp_path):
    """``assign=True`` gives the module the checkpoint's tensors only when that is the same as copying them: a
    checkpoint in another dtype is copied (converted) into the module's own float32 parameters."""
    import torch

    from encoders.pretrained import load_state_strict

    def module():
        return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))

    source = module()
    with torch.no_grad():
        source[1].running_mean.uniform_()
    state = source.state_dict()
    for assign in (False, True):
        target = module()
        load_state_strict(target, dict(state), "checkpoint", "test", assign=assign)
        assert all(torch.equal(target.state_dict()[k], v) for k, v in state.items())
        assert all(p.requires_grad for p in target.parameters())
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    target = module()
    load_state_strict(target, half, "checkpoint", "test", assign=True)
    assert target[0].weight.dtype == torch.float32
    assert torch.equal(target[0].weight, half["0.weight"].float())

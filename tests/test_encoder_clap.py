"""CLAP encoders against laion-clap itself, on seeded random-init checkpoints (no pretrained weights here).

The oracle is the library's own path: ``CLAP_Module`` + ``load_ckpt`` + ``get_audio_embedding_from_data``.
torch and laion_clap are imported inside fixtures and tests; tests that build CLAP are marked ``slow``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pytest

from encoders import clap
from encoders.base import EncoderError, EncoderUnavailable, WindowPolicy, pool
from encoders.clap import CLIP_SAMPLES, SAMPLE_RATE, ClapEncoder, ClapMusicEncoder, window_starts
from encoders.registry import EncoderOptions, build, encoder_class
from encoders.runtime import import_laion_clap
from encoders.weights import WeightsNotFound, sha256_file

CKPT = ClapEncoder.weights_spec.files[0]


def tone(seconds: float, seed: int = 0) -> np.ndarray:
    """Deterministic test audio: a 440 Hz sine plus seeded noise, in [-1, 1]."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    noise = np.random.default_rng(seed).standard_normal(t.size)
    return (0.5 * np.sin(2 * np.pi * 440 * t) + 0.05 * noise).astype(np.float32)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return ClapEncoder.write_random_weights(tmp_path_factory.mktemp("clap"))


@pytest.fixture(scope="module")
def encoder(ckpt) -> ClapEncoder:
    return ClapEncoder(EncoderOptions(weights=str(ckpt), device="cpu", batch_size=4))


@pytest.fixture(scope="module")
def oracle(ckpt):
    """The library's CLAP_Module loaded by its own ``load_ckpt``; only roberta-base's hub download is replaced."""
    import transformers

    laion_clap = import_laion_clap()
    config = transformers.RobertaConfig(**clap._ROBERTA_BASE)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            transformers.RobertaModel, "from_pretrained", classmethod(lambda cls, *args, **kwargs: cls(config))
        )
        patch.setattr(transformers.RobertaTokenizer, "from_pretrained", classmethod(lambda cls, *args, **kwargs: None))
        module = laion_clap.CLAP_Module(enable_fusion=False, amodel="HTSAT-tiny", device="cpu")
    module.load_ckpt(ckpt=str(ckpt), verbose=False)
    return module


def library_embedding(oracle, clips: list[np.ndarray]) -> np.ndarray:
    import torch

    tensors = [torch.from_numpy(clip) for clip in clips]
    return oracle.get_audio_embedding_from_data(tensors, use_tensor=True).detach().cpu().numpy()


def test_cards_and_registry():
    assert encoder_class("clap") is ClapEncoder and encoder_class("clap-music") is ClapMusicEncoder
    for cls, name, ckpt_name in (
        (ClapEncoder, "clap", CKPT),
        (ClapMusicEncoder, "clap-music", "music_audioset_epoch_15_esc_90.14.pt"),
    ):
        card = cls.card
        assert (card.name, card.sample_rate, card.dim) == (name, 48000, 512)
        assert card.window == WindowPolicy(window_seconds=10.0, hop_seconds=10.0, pad_last=False)
        assert "CC0-1.0" in card.license and card.package == "laion-clap"
        assert card.weights_id == f"lukewys/laion_clap:{ckpt_name}"
        assert cls.weights_spec.files == (ckpt_name,) and cls.weights_spec.model == name


@pytest.mark.slow
def test_random_checkpoint_has_the_released_layout(ckpt):
    import torch

    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert {"epoch", "name", "state_dict"} <= checkpoint.keys()
    keys = list(checkpoint["state_dict"])
    assert all(key.startswith("module.") for key in keys)
    assert "module.text_branch.embeddings.position_ids" in keys


@pytest.mark.slow
def test_matches_library_oracle(encoder, oracle):
    clips = [tone(2.5, seed=1), tone(10.0, seed=2)]
    ours = encoder.embed(clips)
    reference = library_embedding(oracle, clips)
    assert ours.dtype == np.float32 and ours.shape == (2, 512)
    assert np.abs(ours - reference).max() <= 1e-4
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_fast_load_equals_random_init_then_copy(ckpt, encoder):
    """The encoder builds CLAP without drawing random initial values and takes the memory-mapped checkpoint's
    tensors (``assign``): the same model as the simple path (seeded random init, then a strict copy of every
    tensor), parameter for parameter and buffer for buffer, and the same embeddings."""
    import torch

    from encoders.pretrained import load_state_strict

    simple = clap._build_clap_module("HTSAT-tiny", "cpu")
    load_state_strict(simple.model, clap._read_state_dict(ckpt), "checkpoint", "laion-clap")
    simple.eval()
    fast = encoder.model.model
    for name, tensor in simple.model.state_dict().items():
        assert torch.equal(tensor, fast.state_dict()[name]), name
    fast_buffers = dict(fast.named_buffers())
    for name, tensor in simple.model.named_buffers():  # non-persistent ones too
        assert torch.equal(tensor, fast_buffers[name]), name
    assert [p.requires_grad for p in fast.parameters()] == [p.requires_grad for p in simple.model.parameters()]
    clips = [tone(2.5, seed=5), tone(12.0, seed=6)]
    ours = encoder.embed(clips)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(encoder, "_model", simple)
        reference = encoder.embed(clips)
    assert np.abs(ours - reference).max() <= 1e-6


@pytest.mark.slow
def test_batch_size_does_not_change_embeddings(encoder):
    clips = [tone(1.0, seed=3), tone(3.0, seed=4)]
    one_at_a_time = np.concatenate([encoder.embed([clip]) for clip in clips])
    assert np.abs(encoder.embed(clips) - one_at_a_time).max() <= 1e-5


def test_window_starts_cover_long_audio_with_full_windows():
    assert window_starts(1) == [0] and window_starts(CLIP_SAMPLES) == [0]
    assert window_starts(CLIP_SAMPLES + 1) == [0, 1]
    starts = window_starts(25 * SAMPLE_RATE)
    assert starts == [0, 360000, 720000] and starts[-1] + CLIP_SAMPLES == 25 * SAMPLE_RATE


@pytest.mark.slow
def test_long_audio_is_windowed_deterministically(encoder, monkeypatch):
    def no_random_crop(*args, **kwargs):
        raise AssertionError("laion-clap's random crop was reached")

    monkeypatch.setattr(np.random, "randint", no_random_crop)
    audio = tone(15.0, seed=5)
    np.random.seed(1)
    state = np.random.get_state()
    first = encoder.embed([audio])
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), state))
    np.random.seed(2)
    second = encoder.embed([audio])
    assert np.array_equal(first, second)
    windows = [audio[start : start + CLIP_SAMPLES] for start in window_starts(audio.size)]
    np.testing.assert_allclose(first[0], pool(encoder.embed(windows)), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize(
    "audio, problem",
    [
        (np.full(4800, np.nan, dtype=np.float32), "NaN"),
        (np.zeros((2, 4800), dtype=np.float32), "mono"),
        (np.zeros(0, dtype=np.float32), "empty"),
    ],
)
def test_bad_input_is_refused(encoder, audio, problem):
    with pytest.raises(EncoderError, match=problem):
        encoder.embed([tone(1.0), audio])


@pytest.mark.slow
def test_strict_load_names_missing_and_unexpected_keys(ckpt, tmp_path):
    import torch

    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    state = checkpoint["state_dict"]
    del state["module.audio_projection.0.weight"]
    state["module.audio_branch.not_a_layer.weight"] = torch.zeros(1)
    broken = tmp_path / CKPT
    torch.save(checkpoint, broken)
    encoder = ClapEncoder(EncoderOptions(weights=str(broken), device="cpu"))  # loaded where it embeds: not yet
    with pytest.raises(EncoderError) as error:
        encoder.load_model()
    message = str(error.value)
    assert "audio_projection.0.weight" in message and "audio_branch.not_a_layer.weight" in message


def test_checkpoint_reading_mirrors_the_library(tmp_path, caplog):
    import torch

    tensor = torch.ones(1)
    # released checkpoints pickle numpy scalars: they must load with weights_only=True, without a warning
    with_numpy = tmp_path / "numpy.pt"
    torch.save(
        {
            "state_dict": {"module.a": tensor, "module." + clap._POSITION_IDS: tensor},
            "optimizer": {"param_groups": [{"lr": np.float64(1e-4)}]},
        },
        with_numpy,
    )
    bare = tmp_path / "bare.pt"
    torch.save({"a": tensor}, bare)  # no wrapper, no prefix, no position_ids: still readable
    with caplog.at_level(logging.WARNING, logger=clap.log.name):
        assert list(clap._read_state_dict(with_numpy)) == ["a"]
        assert list(clap._read_state_dict(bare)) == ["a"]
    assert not [record for record in caplog.records if record.name == clap.log.name]
    # an arbitrary pickled object needs full unpickling: refused unless the user vouches for the file
    exotic = tmp_path / "exotic.pt"
    torch.save({"state_dict": {"a": tensor}, "args": argparse.Namespace(lr=1)}, exotic)
    with pytest.raises(EncoderUnavailable, match="MUSICBENCH_ALLOW_PICKLE"):
        clap._read_state_dict(exotic)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MUSICBENCH_ALLOW_PICKLE", "1")
        assert list(clap._read_state_dict(exotic)) == ["a"]
    not_torch = tmp_path / "not_torch.pt"
    not_torch.write_text("<html>404</html>")
    with pytest.raises(EncoderUnavailable, match="cannot be loaded safely.*Unsupported operand"):
        clap._read_state_dict(not_torch)
    with pytest.MonkeyPatch.context() as patch, pytest.raises(EncoderError, match="cannot read CLAP checkpoint"):
        patch.setenv("MUSICBENCH_ALLOW_PICKLE", "1")
        clap._read_state_dict(not_torch)


@pytest.mark.parametrize("cls", [ClapEncoder, ClapMusicEncoder])
def test_missing_weights_say_what_to_download(cls, no_weights):
    for attempt in (lambda: cls.check_available(EncoderOptions()), lambda: cls(EncoderOptions())):
        with pytest.raises(WeightsNotFound) as error:
            attempt()
        message = str(error.value)
        assert cls.weights_spec.files[0] in message
        assert "lukewys/laion_clap" in message and "$MUSICBENCH_WEIGHTS" in message
    assert no_weights == []


def test_nonexistent_weights_path_is_named(tmp_path, no_weights):
    missing = tmp_path / "nowhere" / CKPT
    with pytest.raises(WeightsNotFound, match=str(missing)):
        ClapEncoder.check_available(EncoderOptions(weights=str(missing)))
    assert no_weights == []


@pytest.mark.slow
def test_explicit_path_and_weights_dir_resolve(ckpt, tmp_path, no_weights, monkeypatch):
    assert ClapEncoder.check_available(EncoderOptions(weights=str(ckpt))) == f"weights: {ckpt} (explicit)"
    assert ClapEncoder.check_available(EncoderOptions(weights=str(ckpt.parent))) == f"weights: {ckpt} (explicit)"
    linked = tmp_path / "weights" / "clap" / CKPT
    linked.parent.mkdir(parents=True)
    linked.symlink_to(ckpt)
    monkeypatch.setenv("MUSICBENCH_WEIGHTS", str(tmp_path / "weights"))
    assert ClapEncoder.check_available(EncoderOptions()) == f"weights: {linked} (env)"
    window = WindowPolicy(window_seconds=5.0, hop_seconds=2.5, pad_last=False)
    built = build("clap", EncoderOptions(device="cpu", window=window))
    assert built.weights_source == str(linked) and built.weights_sha256 == sha256_file(ckpt)
    assert built.window == window and ClapEncoder.card.window.window_seconds == 10.0
    assert no_weights == []


@pytest.mark.slow
def test_clap_music_builds_and_embeds(tmp_path):
    path = ClapMusicEncoder.write_random_weights(tmp_path)
    assert path.name == "music_audioset_epoch_15_esc_90.14.pt"
    embeddings = ClapMusicEncoder(EncoderOptions(weights=str(path), device="cpu")).embed([tone(2.0)])
    assert embeddings.shape == (1, 512) and embeddings.dtype == np.float32 and np.isfinite(embeddings).all()

"""LAION-CLAP audio embeddings (laion-clap 1.1.7), offline, strict and deterministic.

The library's public path (``CLAP_Module`` + ``load_ckpt`` + ``get_audio_embedding_from_data``) is not used
as is, for reasons measured on laion-clap 1.1.7:

* ``CLAP_Module.__init__`` fetches roberta-base weights and its tokenizer from the hub. musicbench needs only
  the audio branch, and the CLAP checkpoint carries the text-branch weights itself, so construction uses a
  config-only RoBERTa and no tokenizer.
* ``load_ckpt`` unpickles with ``weights_only=False``, prints every parameter name, and raises ``KeyError``
  when ``text_branch.embeddings.position_ids`` is absent. The checkpoint is read here the same way, but safely,
  and a mismatch names the offending keys.
* Audio longer than 10 s is cropped at a random offset (``np.random`` in ``get_audio_features``). Longer input
  is cut here into deterministic 10 s windows, so that branch is never reached.
* The public API leaves autograd on; embedding runs under ``torch.inference_mode()``.

Per window, preprocessing is the library's own ``get_audio_features`` with the arguments
``get_audio_embedding_from_data(x, use_tensor=True)`` passes (no int16 round trip), followed by one batched
``CLAP.get_audio_embedding`` call, which L2-normalises.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np

from .base import EncoderError, ModelCard, WindowPolicy, pool
from .pretrained import PretrainedEncoder, load_state_strict, new_weights_dir, read_torch_checkpoint
from .runtime import import_laion_clap
from .torch_utils import checked_mono, seeded_random_init
from .weights import WeightsSpec

log = logging.getLogger(__name__)

HF_REPO = "lukewys/laion_clap"
SAMPLE_RATE = 48000
CLIP_SAMPLES = 480000  # 10 s: the audio_cfg "clip_samples" of every HTSAT config in laion-clap
DIM = 512
LICENSE = "CC0-1.0 (LAION-CLAP checkpoints, per the lukewys/laion_clap model card; laion-clap code also CC0-1.0)"

_DDP_PREFIX = "module."
_POSITION_IDS = "text_branch.embeddings.position_ids"
#: roberta-base's architecture, so the text branch has the shapes the CLAP checkpoints were trained with.
_ROBERTA_BASE = dict(
    vocab_size=50265,
    max_position_embeddings=514,
    type_vocab_size=1,
    layer_norm_eps=1e-5,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
)
#: what ``get_audio_embedding_from_data`` passes for a non-fusion model.
_TRUNCATING, _FILLING = "rand_trunc", "repeatpad"


class ClapEncoder(PretrainedEncoder):
    """LAION-CLAP, HTSAT-tiny audio tower, the library's default non-fusion checkpoint."""

    amodel = "HTSAT-tiny"
    card = ModelCard(
        name="clap",
        description="LAION-CLAP audio encoder (HTSAT-tiny, 630k-audioset-best; 48 kHz, 10 s windows)",
        sample_rate=SAMPLE_RATE,
        dim=DIM,
        window=WindowPolicy(window_seconds=10.0, hop_seconds=10.0, pad_last=False),
        license=LICENSE,
        package="laion-clap",
        weights_id=f"{HF_REPO}:630k-audioset-best.pt",
        captures="general audio semantics aligned with text captions (sound sources, instruments, genre, mood); "
        "little sensitivity to melody, harmony or key",
    )
    weights_spec = WeightsSpec(model="clap", hf_repo=HF_REPO, files=("630k-audioset-best.pt",))
    install = "laion-clap==1.1.7"
    family = "laion-clap"
    precisions = ("fp32", "bf16")  # bf16: cosine ≥ 0.9999 to fp32 (tests/test_precision.py, perf/clap_speed.py)
    # On the CPU, files are embedded in worker processes forked from a fork server that imports laion_clap while the
    # run sets itself up (4-5 s of imports that this process then never does); each worker loads the model.
    parallel = "process"
    worker_modules = ("encoders.clap_runtime",)

    def _load(self, path: Path, device):
        """The library's ``CLAP_Module`` (built without the hub), its ``CLAP`` model loaded strictly from ``path``.

        Fast and exact: the checkpoint is memory-mapped and its tensors become the model's (``assign``), and the
        model is built without drawing random initial values, since the strict load overwrites every parameter
        and buffer they would fill (the weights are the checkpoint's either way; the equality is tested)."""
        state = _read_state_dict(path, mmap=True)  # first: an unreadable file fails before the model is built
        clap = _build_clap_module(self.amodel, "cpu", random_init=False)
        load_state_strict(clap.model, state, f"checkpoint {path} ({self.amodel})", self.family, assign=True)
        if device.type != "cpu":
            clap.to(device)
            clap.device = str(device)
        return clap.eval()

    @classmethod
    def write_random_weights(cls, directory: Path) -> Path:
        """Save a seeded random-init checkpoint in the released files' layout; returns its path.

        Layout of the released checkpoints (laion_clap/training/main.py): ``{"epoch", "name", "state_dict"}``
        plus optimizer state, with DDP's ``module.`` prefix on every key and the RoBERTa ``position_ids``
        buffer that transformers < 4.31 saved (the library deletes it unconditionally when loading). The
        optimizer state is left out: nothing reads it.
        """
        import torch

        directory = new_weights_dir(directory)
        with seeded_random_init():
            clap = _build_clap_module(cls.amodel, "cpu")
        state = {_DDP_PREFIX + key: value for key, value in clap.model.state_dict().items()}
        state[_DDP_PREFIX + _POSITION_IDS] = torch.arange(_ROBERTA_BASE["max_position_embeddings"]).unsqueeze(0)
        path = directory / cls.weights_spec.files[0]
        torch.save({"epoch": 0, "name": f"musicbench random init, {cls.amodel}, seed 0", "state_dict": state}, path)
        return path

    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        """One CLAP embedding per segment, L2-normalised as the library returns it.

        A segment longer than 10 s becomes the mean of its windows' embeddings (not re-normalised), pooled
        with ``base.pool`` like the windows the harness cuts itself.
        """
        windows, owners = [], []
        for index, audio in enumerate(batch):
            audio = checked_mono(audio, index)
            for start in window_starts(len(audio)):
                windows.append(audio[start : start + CLIP_SAMPLES])
                owners.append(index)
        if not windows:
            return np.empty((0, self.dim), dtype=np.float32)
        vectors = np.concatenate(
            [self._embed_windows(windows[i : i + self.batch_size]) for i in range(0, len(windows), self.batch_size)]
        )
        owners = np.asarray(owners)
        return np.stack([pool(vectors[owners == index]) for index in range(len(batch))])

    def _embed_windows(self, windows: list[np.ndarray]) -> np.ndarray:
        """One batched forward pass over ≤10 s windows, preprocessed exactly as the library does."""
        import torch
        from laion_clap.training.data import get_audio_features

        audio_cfg = self.model.model_cfg["audio_cfg"]
        with self.computing():
            features = [
                get_audio_features(
                    {},
                    torch.tensor(window),
                    CLIP_SAMPLES,
                    data_truncating=_TRUNCATING,
                    data_filling=_FILLING,
                    audio_cfg=audio_cfg,
                    require_grad=False,
                )
                for window in windows
            ]
            vectors = self.model.model.get_audio_embedding(features).float().cpu().numpy()
        bad = ~np.isfinite(vectors).all(axis=1)
        if bad.any():
            raise EncoderError(
                f"CLAP produced non-finite embeddings for {int(bad.sum())} of {len(windows)} "
                f"windows (weights {self.weights_source})"
            )
        return vectors


class ClapMusicEncoder(ClapEncoder):
    """LAION-CLAP, HTSAT-base audio tower, the checkpoint LAION recommends for music."""

    amodel = "HTSAT-base"
    card = dataclasses.replace(
        ClapEncoder.card,
        name="clap-music",
        description="LAION-CLAP audio encoder, music checkpoint (HTSAT-base, music_audioset_epoch_15_esc_90.14; "
        "48 kHz, 10 s windows)",
        weights_id=f"{HF_REPO}:music_audioset_epoch_15_esc_90.14.pt",
        captures="music semantics aligned with text captions (genre, instrumentation, mood), trained with music "
        "data; little sensitivity to melody, harmony or key",
    )
    weights_spec = WeightsSpec(model="clap-music", hf_repo=HF_REPO, files=("music_audioset_epoch_15_esc_90.14.pt",))


def window_starts(n_samples: int) -> list[int]:
    """Start samples of the 10 s windows a segment is embedded in.

    Up to 10 s: one window, the whole segment (the library repeat-pads it). Longer: the fewest full 10 s
    windows that cover it, spread evenly from the first sample to the last, so no short tail is
    repeat-padded into a window that counts as much as a full one.
    """
    if n_samples <= CLIP_SAMPLES:
        return [0]
    count = math.ceil(n_samples / CLIP_SAMPLES)
    return [round(i * (n_samples - CLIP_SAMPLES) / (count - 1)) for i in range(count)]


def _no_text_tokenizer(*args, **kwargs):
    raise EncoderError("musicbench builds CLAP for audio only; text tokenization is not available")


def _build_clap_module(amodel: str, device: str, random_init: bool = True):
    """``CLAP_Module(enable_fusion=False, amodel=...)`` at random init, built without the hub.

    While the constructor runs (only then), ``RobertaModel.from_pretrained('roberta-base')`` yields a
    config-only RoBERTa of the same shape and ``RobertaTokenizer.from_pretrained`` a stub that refuses text.
    ``random_init=False``: the parameters are left uninitialised (see ``_without_random_init``), for a model whose
    every parameter is loaded next.
    """
    laion_clap = import_laion_clap()  # first: it sets the hub-offline defaults before transformers is imported
    import transformers

    clap_model_module = importlib.import_module("clap_module.model")  # laion_clap puts its folder on sys.path
    hook_module = importlib.import_module(laion_clap.CLAP_Module.__module__)
    config_only = SimpleNamespace(
        from_pretrained=lambda *args, **kwargs: transformers.RobertaModel(transformers.RobertaConfig(**_ROBERTA_BASE))
    )
    no_tokenizer = SimpleNamespace(from_pretrained=lambda *args, **kwargs: _no_text_tokenizer)
    with (
        mock.patch.object(clap_model_module, "RobertaModel", config_only),
        mock.patch.object(hook_module, "RobertaTokenizer", no_tokenizer),
        contextlib.nullcontext() if random_init else _without_random_init(),
    ):
        return laion_clap.CLAP_Module(enable_fusion=False, device=device, amodel=amodel)


def _unchanged(tensor, *args, **kwargs):
    return tensor


def _no_dft(self, n):
    import numpy

    return numpy.zeros((n, n), dtype=numpy.complex128)


#: What torchlibrosa asks librosa for while it builds CLAP's STFT and mel filter bank (a window, its padding, the
#: mel bank), answered with zeros of the right shapes: the conv weights and ``melW`` they fill are parameters, loaded
#: from the checkpoint. librosa itself is then not imported (≈ 1 s in a fresh process: numba-compiled utilities).
_NO_FILTER_BANKS = SimpleNamespace(
    filters=SimpleNamespace(
        get_window=lambda window, n, fftbins=True: np.zeros(n),
        mel=lambda *, sr, n_fft, n_mels, fmin, fmax: np.zeros((n_mels, 1 + n_fft // 2), dtype=np.float32),
    ),
    util=SimpleNamespace(pad_center=lambda data, *, size: np.zeros(size)),
)


@contextlib.contextmanager
def _without_random_init():
    """While active, building CLAP draws no random initial values and computes no filter banks: PyTorch's
    ``nn.init`` functions and transformers' ``init_weights`` (``no_init_weights``), HTSAT's own ``trunc_normal_``,
    torchlibrosa's DFT matrix, window and mel bank (``_NO_FILTER_BANKS``) leave the tensors as allocated or zero.
    Every parameter and buffer they would fill is in the checkpoint, and ``load_state_strict`` refuses a checkpoint
    that lacks any, so the loaded model is the same; building takes a fraction of the time (≈160M random values
    are not drawn)."""
    from transformers.modeling_utils import no_init_weights

    htsat = importlib.import_module("clap_module.htsat")
    stft = importlib.import_module("torchlibrosa.stft")
    with (
        no_init_weights(),
        mock.patch.object(htsat, "trunc_normal_", _unchanged),
        mock.patch.object(stft.DFTBase, "dft_matrix", _no_dft),
        mock.patch.object(stft, "librosa", _NO_FILTER_BANKS),
    ):
        yield


def _numpy_scalar_globals() -> list:
    """What torch's weights-only unpickler must allow to rebuild numeric numpy scalars.

    The released checkpoints pickle numpy scalars (the Hub's scan lists ``numpy.core.multiarray.scalar`` and
    ``numpy.dtype``; presumably learning rates in the optimizer state). Allowing exactly these keeps
    ``weights_only=True`` usable for them.
    """
    codes = np.typecodes["AllInteger"] + np.typecodes["AllFloat"] + "?"
    return [np.core.multiarray.scalar, np.dtype, *{type(np.dtype(code)) for code in codes}]


def _read_state_dict(path: Path, mmap: bool = False) -> dict:
    """The checkpoint's weights keyed like ``CLAP.state_dict()``, as clap_module.factory.load_state_dict does
    (``mmap``: memory-mapped, see ``weights.load_torch_checkpoint``)."""
    checkpoint = read_torch_checkpoint(path, "clap", "CLAP", tuple(_numpy_scalar_globals()), mmap=mmap)
    state = checkpoint["state_dict"] if isinstance(checkpoint, Mapping) and "state_dict" in checkpoint else checkpoint
    if not isinstance(state, Mapping):
        raise EncoderError(f"{path} holds no state dict (found {type(state).__name__})")
    state = {key.removeprefix(_DDP_PREFIX): value for key, value in state.items()}
    state.pop(_POSITION_IDS, None)  # a buffer transformers >= 4.31 no longer saves
    return state

"""MuQ (Zhu et al., 2025): a self-supervised music conformer; its last hidden state, mean-pooled over time.

Loading is the package's own ``MuQ.from_pretrained(<local directory>)``, always given the directory that
``resolve_weights`` found: handed a hub id offline, ``from_pretrained`` finds no config and fails later with a
misleading ``TypeError`` about a missing ``config`` argument. Two defaults of that loader are overridden:
``strict=True`` (its default ``strict=False`` silently keeps random parameters for keys the file lacks) and an
explicit ``eval()`` (the safetensors path leaves the model in training mode).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np

from .base import EncoderError, ModelCard, WindowPolicy
from .pretrained import PretrainedEncoder, new_weights_dir
from .runtime import prepare_torch_stack
from .torch_utils import seeded_random_init
from .weights import WeightsSpec

SAMPLE_RATE = 24000
#: The mel front end (n_fft 2048, centred) reflect-pads 1024 samples each side, which needs more than 1024
#: input samples; 1025 samples (0.043 s) is the shortest input that runs.
MIN_SAMPLES = 1025
#: Shorter audio is zero-padded up to this (a round value above MIN_SAMPLES / SAMPLE_RATE).
MIN_SECONDS = 0.05
HF_REPO = "OpenMuQ/MuQ-large-msd-iter"
#: Mel statistics of MuQ-large-msd-iter (its config's ``stat``), needed to build the architecture at random init.
MEL_STAT = {"melspec_2048_mean": 6.768444971712967, "melspec_2048_std": 18.417922652295623}


class MuQEncoder(PretrainedEncoder):
    """Mean over time of MuQ-large's last hidden state (1024-d, 25 frames/s at 24 kHz)."""

    card = ModelCard(
        name="muq",
        description="MuQ-large (MSD) self-supervised conformer, last hidden state (1024-d, 25 frames/s), "
        "mean over time",
        sample_rate=SAMPLE_RATE,
        dim=1024,
        window=WindowPolicy(min_seconds=MIN_SECONDS),
        license="CC BY-NC 4.0 (weights, per the muq package's LICENSE_weights; code MIT)",
        package="muq",
        weights_id=HF_REPO,
        captures="general music semantics learned from mel tokens (genre, instrumentation, mood); "
        "the time mean blurs temporal structure",
    )
    weights_spec = WeightsSpec(
        model="muq", hf_repo=HF_REPO, files=("config.json", "model.safetensors"), is_directory=True
    )
    install = "muq==0.1.0 'transformers<5'"
    family = "MuQ"
    min_samples = MIN_SAMPLES

    def _load(self, directory: Path, device):
        """``MuQ.from_pretrained`` on the local directory, strict (the library's own check), fp32, eval mode."""
        from muq import MuQ

        try:
            # from_pretrained prints "Loading weights from local directory" on stdout, which belongs to the CLI.
            with contextlib.redirect_stdout(sys.stderr):  # (the base class keeps the caller's random streams)
                model = MuQ.from_pretrained(str(directory), strict=True)
        except RuntimeError as error:  # safetensors' strict load names the missing / unexpected keys
            raise EncoderError(f"{directory} does not match the MuQ architecture: {error}") from error
        except (TypeError, KeyError, AttributeError, ValueError) as error:  # config.json is not a MuQ config
            raise EncoderError(
                f"{directory}/config.json does not describe a MuQ model: {type(error).__name__}: {error}"
            ) from error
        return model.float().to(device).eval()

    def _embed_equal_length(self, audio: np.ndarray) -> np.ndarray:
        """Embed ``(n, samples)`` in one forward pass, as the package's README calls it (fp32, no grad)."""
        import torch

        device = next(self.model.parameters()).device
        with torch.inference_mode():
            hidden = self.model(torch.from_numpy(audio).to(device), output_hidden_states=False).last_hidden_state
        return hidden.float().mean(dim=1).cpu().numpy()

    @classmethod
    def write_random_weights(cls, directory: Path, *, small: bool = False) -> Path:
        """Save MuQ at random init with ``save_pretrained`` (config.json + model.safetensors); returns the directory.

        The default is the real MuQ-large architecture (12 conformer layers, ≈340 M parameters, ≈1.4 GB).
        ``small=True`` keeps every width (so ``dim`` stays 1024) but only 2 layers: quick to build in tests.
        """
        prepare_torch_stack()
        from muq import MuQ

        directory = new_weights_dir(directory)
        # MuQModel then reseeds torch and Python's random with 142 itself (RandomProjectionQuantizer)
        with seeded_random_init():
            MuQ(_random_config(layers=2 if small else 12)).save_pretrained(directory)
        return directory


def _random_config(layers: int):
    """MuQ-large's config: a Wav2Vec2-Conformer (1024 wide, 16 heads, FFN 4096, relative positions) + mel stats.

    MuQ wraps ``w2v2_config`` in an ``EasyDict``, which rejects the integer keys of ``id2label``; the JSON
    round trip turns them into strings, exactly as they arrive from a saved config.json.
    """
    prepare_torch_stack()
    import json

    from muq import MuQConfig
    from transformers import Wav2Vec2ConformerConfig

    w2v2 = Wav2Vec2ConformerConfig(
        hidden_size=1024,
        num_hidden_layers=layers,
        num_attention_heads=16,
        intermediate_size=4096,
        position_embeddings_type="relative",
    )
    return MuQConfig(
        encoder_dim=1024, encoder_depth=layers, stat=dict(MEL_STAT), w2v2_config=json.loads(json.dumps(w2v2.to_dict()))
    )

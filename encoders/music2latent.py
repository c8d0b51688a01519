"""Music2Latent (Pasini et al., 2024): a consistency autoencoder's 64-channel latent, mean-pooled over time.

Loading goes through the package's own ``EncoderDecoder`` with two changes, both scoped to the constructor
call and never written to site-packages:

* ``EncoderDecoder.__init__`` always calls ``download_model()``, which fetches the checkpoint from the hub
  into site-packages even when ``load_path_inference`` points at a local file. It is replaced by a no-op, so
  building the encoder never touches the network; the weights come from ``resolve_weights``.
* ``EncoderDecoder.get_models`` loads with ``torch.load(weights_only=False)`` and ``strict=False``, which
  silently leaves randomly initialised any parameter the checkpoint lacks. It is replaced by a strict loader
  that prefers ``weights_only=True``.

Embedding calls the package's own ``encode`` (which crops to whole latent frames and splits audio longer than
60 s into chunks itself), with its fp16 autocast switched off so every device computes in fp32.
"""

from __future__ import annotations

import logging
from pathlib import Path
from unittest import mock

import numpy as np

from .base import EncoderError, ModelCard, WindowPolicy
from .pretrained import PretrainedEncoder, load_state_strict, new_weights_dir, read_torch_checkpoint
from .runtime import prepare_torch_stack
from .torch_utils import seeded_random_init
from .weights import WeightsSpec

log = logging.getLogger(__name__)

SAMPLE_RATE = 44100
#: The package's ``encode`` crops audio to 3 STFT hops (hop 512) plus whole latent frames of 8 hops (4096
#: samples); shorter than 3 * 512 + 4096 = 5632 samples (0.128 s) it crashes in the STFT framing.
MIN_SAMPLES = 5632
#: Shorter audio is zero-padded up to this (a round value above MIN_SAMPLES / SAMPLE_RATE).
MIN_SECONDS = 0.13
#: Audio seconds per encoder forward pass. CPU memory grows by about 100 MB per second of audio in a pass
#: (measured: +2 GB for 20 s), so a batch is split into passes of at most this much audio.
SECONDS_PER_PASS = 20.0
#: The package splits longer audio into chunks of this length (hparams_inference.max_waveform_length_encode).
CHUNK_SECONDS = 60.0
CHECKPOINT_FILE = "music2latent.pt"


class Music2LatentEncoder(PretrainedEncoder):
    """Mean over time of Music2Latent's encoder latent (64 channels, ≈10.8 frames/s at 44.1 kHz)."""

    card = ModelCard(
        name="music2latent",
        description="Music2Latent consistency-autoencoder latent (64 channels, ~10.8 frames/s), mean over time",
        sample_rate=SAMPLE_RATE,
        dim=64,
        window=WindowPolicy(min_seconds=MIN_SECONDS),
        license="CC BY-NC 4.0 (weights and code; non-commercial)",
        package="music2latent",
        weights_id=f"SonyCSLParis/music2latent:{CHECKPOINT_FILE}",
        captures="compressed spectral content for reconstruction (timbre, texture, loudness); "
        "the time mean keeps little melody, rhythm or structure",
    )
    weights_spec = WeightsSpec(model="music2latent", hf_repo="SonyCSLParis/music2latent", files=(CHECKPOINT_FILE,))
    install = "music2latent==0.1.8"
    family = "Music2Latent"
    min_samples = MIN_SAMPLES

    def _load(self, path: Path, device):
        """The package's ``EncoderDecoder`` from ``path``, with no download and a strict load."""
        from music2latent import inference

        def get_models(model) -> None:
            model.gen = _load_generator(Path(model.load_path_inference), model.device)

        with (
            mock.patch.object(inference, "download_model", lambda: None),
            mock.patch.object(inference.EncoderDecoder, "get_models", get_models),
        ):
            return inference.EncoderDecoder(load_path_inference=str(path), device=device)

    def _embed_equal_length(self, audio: np.ndarray) -> np.ndarray:
        """Embed ``(n, samples)``: the package's ``encode`` treats rows as channels and returns one latent each."""
        import torch
        from music2latent import inference

        seconds = min(audio.shape[1] / self.sample_rate, CHUNK_SECONDS)
        per_pass = max(1, int(SECONDS_PER_PASS // seconds))
        with torch.inference_mode(), mock.patch.object(inference, "mixed_precision", False):
            latent = self.model.encode(audio, max_batch_size=per_pass)
        return latent.float().mean(dim=-1).cpu().numpy()

    @classmethod
    def write_random_weights(cls, directory: Path) -> Path:
        """Save the real architecture at random init (seed 0) as the package saves it: ``{"gen_state_dict": …}``."""
        import torch

        prepare_torch_stack()
        from music2latent.models import UNet

        path = new_weights_dir(directory) / CHECKPOINT_FILE
        with seeded_random_init():  # seed 0 without touching the caller's random streams
            state = UNet().state_dict()
        torch.save({"gen_state_dict": state}, path)
        return path


def _load_generator(path: Path, device):
    """The package's ``UNet`` with every parameter from the checkpoint (strict), on ``device``, in eval mode."""
    from music2latent.models import UNet

    checkpoint = read_torch_checkpoint(path, "music2latent", Music2LatentEncoder.family)
    if not isinstance(checkpoint, dict) or "gen_state_dict" not in checkpoint:
        raise EncoderError(f"{path} is not a Music2Latent checkpoint (no 'gen_state_dict' entry)")
    generator = UNet()
    load_state_strict(generator, checkpoint["gen_state_dict"], str(path), Music2LatentEncoder.family)
    return generator.to(device).eval()

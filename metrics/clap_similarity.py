"""CLAP similarity of a (target, retrieved reference) pair: cosine of the two files' CLAP audio embeddings.

Whatever encoder did the retrieval, this metric embeds both files with the ``clap`` encoder
(``encoders.clap.ClapEncoder``: LAION-CLAP HTSAT-tiny, 48 kHz) through ``Encoder.embed_audio`` — the same
deterministic 10 s windows and mean-pooling the harness uses for retrieval — and scores
``cos(t, r) = t·r / (|t| |r|)`` in float64.

A file's features *are* its CLAP embedding, so ``cache_identity()`` is the encoder's own embedding-cache
identity: a file CLAP already embedded for retrieval is not embedded again here, and vice versa. That identity
holds the weights' sha256, which ``ClapEncoder.identity_for`` computes without building the model, so a run
whose files are all cached never loads CLAP. The constructor and ``check_available()`` load nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from encoders.base import Encoder, EncoderError, EncoderUnavailable

from .base import Measure, MetricUnavailable, PairMetric
from .registry import MetricOptions

ENCODER = "clap"


class ClapSimilarity(PairMetric):
    """Cosine similarity of target and retrieved reference in CLAP's audio embedding space."""

    name = "clap_sim"
    sample_rate = 48000  # encoders.clap.SAMPLE_RATE (not imported: that module is read lazily)
    columns = ("clap_sim",)
    file_value_names = ()
    measures = (Measure("clap_sim", True, description="cosine of target and retrieved reference in CLAP space"),)

    def __init__(self, options: MetricOptions | None = None):
        self.options = options or MetricOptions()
        self._encoder: Encoder | None = None

    def encoder_options(self):
        from encoders.registry import EncoderOptions

        return EncoderOptions(
            weights=self.options.weights.get(ENCODER),
            allow_download=self.options.allow_download,
            device=self.options.device,
            batch_size=self.options.batch_size,
        )

    def check_available(self) -> str:
        from encoders.registry import availability

        ok, detail = availability(ENCODER, self.encoder_options())
        if not ok:
            raise MetricUnavailable(detail)
        return f"CLAP encoder '{ENCODER}': {detail}"

    def encoder(self) -> Encoder:
        """The CLAP encoder, built on first use."""
        if self._encoder is None:
            from encoders.registry import build

            try:
                encoder = build(ENCODER, self.encoder_options())
                encoder.load_model()  # unusable weights make the metric unavailable, not each file fail
            except EncoderUnavailable as error:
                raise MetricUnavailable(str(error)) from None
            if encoder.sample_rate != self.sample_rate:  # pragma: no cover - guards a card change
                raise MetricUnavailable(
                    f"encoder '{ENCODER}' runs at {encoder.sample_rate} Hz, "
                    f"this metric decodes at {self.sample_rate} Hz"
                )
            self._encoder = encoder
        return self._encoder

    def _encoder_identity(self) -> dict[str, Any]:
        from encoders.registry import encoder_class

        try:
            return encoder_class(ENCODER).identity_for(self.encoder_options())
        except EncoderUnavailable as error:
            raise MetricUnavailable(str(error)) from None

    def identity(self) -> dict[str, Any]:
        return {"metric": self.name, "sample_rate": self.sample_rate, "version": 1, "encoder": self._encoder_identity()}

    def cache_identity(self) -> dict[str, Any]:
        return {"kind": "embedding", **self._encoder_identity()}  # = the built encoder's cache_identity()

    def file_features(self, audio: np.ndarray) -> np.ndarray:
        """The file's CLAP embedding (float32, pooled over 10 s windows), exactly as retrieval computes it."""
        encoder = self.encoder()
        try:
            return encoder.embed_audio(np.asarray(audio, dtype=np.float32), batch_size=max(1, self.options.batch_size))
        except EncoderUnavailable:
            raise
        except EncoderError as error:  # this file cannot be embedded (empty, NaN, non-finite output)
            raise ValueError(str(error)) from error

    def pair_scores(self, target: np.ndarray, reference: np.ndarray) -> dict[str, float]:
        return {"clap_sim": cosine(target, reference)}

    def close(self) -> None:
        if self._encoder is not None:
            self._encoder.close()
        self._encoder = None


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity in float64; NaN when either vector is zero (undefined, left out of the means)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    if not norm > 0:
        return float("nan")
    return float(np.clip(a @ b / norm, -1.0, 1.0))

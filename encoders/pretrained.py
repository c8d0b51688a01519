"""Base class of the encoders whose pretrained weights come from a model package and are resolved offline.

``PretrainedEncoder`` owns what every such encoder does the same way: finding the weights (``resolve_weights``,
offline first), recording their path and sha256, the ``--window`` override (``Encoder.card_for``), the device
(``pick_device``), loading (the ``_load`` hook), equal-length batching with input and output checks, and
``close``. A subclass keeps only what is specific to its model: its card, where its weights live, how its
package builds and loads it (``_load``), one forward pass (``_embed_equal_length``) and ``write_random_weights``.

``read_torch_checkpoint`` and ``load_state_strict`` are the shared, safe and strict way to read a ``torch.save``
checkpoint and load it into a module, naming what does not match.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import Encoder, EncoderError, EncoderUnavailable, UnusableWeights
from .runtime import prepare_torch_stack, set_offline_defaults
from .torch_utils import caller_rng_kept, equal_length_groups, pick_device
from .weights import ResolvedWeights, WeightsSpec, load_torch_checkpoint, resolve_weights

#: how many missing / unexpected checkpoint keys an error names
KEYS_SHOWN = 10


class PretrainedEncoder(Encoder):
    """Subclasses set ``card``, ``weights_spec``, ``install`` (pip line), ``family`` (how errors name the model)
    and implement ``_load``; for ``embed``'s equal-length batching, ``min_samples`` and ``_embed_equal_length``.
    ``module`` (the import name) defaults to the card's package with ``-`` → ``_``."""

    weights_spec: WeightsSpec
    module: str | None = None
    install: str
    family: str
    min_samples: int = 1
    #: the loaded model (whatever ``_load`` returned); None after ``close()``
    model: Any = None

    def __init__(self, options=None):
        """Resolve the weights (offline unless allowed), pick the device, load the model into ``self.model``.

        Loading leaves the caller's torch and Python random streams as they were (constructors draw random
        initial parameters, and some reseed), so building an encoder never changes a seeded caller's numbers."""
        from .registry import EncoderOptions

        self.options = options = options or EncoderOptions()
        resolved = self._resolve(options)
        self.weights_sha256 = resolved.sha256()
        self.weights_source = str(resolved.path)
        self.card = self.card_for(options)
        self.batch_size = max(1, int(options.batch_size))
        self.device = pick_device(options.device)
        prepare_torch_stack()  # before _load imports its model package
        with caller_rng_kept():
            self.model = self._load(resolved.path, self.device)

    def _load(self, path: Path, device) -> Any:
        """Build the model from the resolved weights at ``path`` on ``device`` (a ``torch.device``), in eval mode."""
        raise NotImplementedError

    def close(self) -> None:
        self.model = None

    @classmethod
    def import_name(cls) -> str:
        """The model package's import name (``module``, else the card's package with ``-`` → ``_``)."""
        return cls.module or cls.card.package.replace("-", "_")

    @classmethod
    def require_package(cls) -> None:
        if importlib.util.find_spec(cls.import_name()) is None:
            raise EncoderUnavailable(
                f"encoder '{cls.card.name}' needs the '{cls.card.package}' package: pip install {cls.install}"
            )

    @classmethod
    def _resolve(cls, options) -> ResolvedWeights:
        cls.require_package()
        set_offline_defaults()  # before resolve_weights may import huggingface_hub, which reads it once
        return resolve_weights(cls.weights_spec, options.weights, options.allow_download)

    @classmethod
    def check_available(cls, options) -> str:
        """Package installed and weights found offline? Loads no model and imports no torch."""
        resolved = cls._resolve(options)
        return f"weights: {resolved.path} ({resolved.source})"

    @classmethod
    def identity_for(cls, options) -> dict[str, Any]:
        """``identity()`` of the encoder ``options`` would build, without building it (hashes the weights)."""
        return cls.make_identity(cls.card_for(options), cls._resolve(options).sha256())

    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        """One embedding per item; equal-length items share forward passes (padding would change them)."""
        out = np.empty((len(batch), self.dim), dtype=np.float32)
        min_samples = max(self.min_samples, int(round(self.window.min_seconds * self.sample_rate)))
        for indices, audio in equal_length_groups(batch, min_samples, self.batch_size):
            out[indices] = self._embed_equal_length(audio)
        bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
        if bad.size:
            raise EncoderError(f"{self.name} produced non-finite embeddings for batch items {bad.tolist()}")
        return out

    def _embed_equal_length(self, audio: np.ndarray) -> np.ndarray:
        """Embed ``(n, samples)`` float32 audio in one forward pass → ``(n, dim)``."""
        raise NotImplementedError


def read_torch_checkpoint(path: Path, model: str, family: str, safe_globals: tuple = ()):
    """``weights.load_torch_checkpoint`` (weights-only unless the user vouched for the file); any other failure
    to read it becomes an ``UnusableWeights`` naming the file (a user's error: one line, no traceback)."""
    try:
        return load_torch_checkpoint(path, model, safe_globals)
    except EncoderUnavailable:
        raise
    except Exception as error:  # noqa: BLE001 - any failure here means an unreadable checkpoint
        raise UnusableWeights(f"cannot read {family} checkpoint {path}: {error}") from error


def _key_list(keys: list[str]) -> str:
    shown = ", ".join(keys[:KEYS_SHOWN])
    return f"{shown}, … ({len(keys) - KEYS_SHOWN} more)" if len(keys) > KEYS_SHOWN else shown


def load_state_strict(module, state: Mapping, what: str, family: str) -> None:
    """``module.load_state_dict(state, strict=True)``; a mismatch is an ``EncoderError`` that names up to
    ``KEYS_SHOWN`` missing and unexpected keys (or the shape mismatch), so a wrong checkpoint is never half-loaded.
    It is an ``UnusableWeights``: the user's to fix, shown as one line."""
    expected = set(module.state_dict())
    missing, unexpected = sorted(expected - state.keys()), sorted(state.keys() - expected)
    if missing or unexpected:
        problems = [
            f"{label} keys ({len(keys)}): {_key_list(keys)}"
            for label, keys in (("missing", missing), ("unexpected", unexpected))
            if keys
        ]
        raise UnusableWeights(f"{what} does not match the {family} architecture: " + "; ".join(problems))
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:  # same keys, different shapes
        raise UnusableWeights(f"{what} does not match the {family} architecture: {error}") from error


def new_weights_dir(directory: str | Path) -> Path:
    """``directory`` as a ``Path``, created if needed: where ``write_random_weights`` saves."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return directory

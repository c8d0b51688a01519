"""Encoder name → lazy factory. Importing this module imports no model package.

Adding an encoder = one file in ``encoders/`` defining an ``Encoder`` subclass + one entry below.
The encoder module itself must import heavy packages (torch models, laion_clap, …) only inside
methods, so that ``card``/``weights_spec`` can be read cheaply.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import Encoder, EncoderUnavailable, ModelCard, WindowPolicy

#: name users type → "module:Class"
ENCODERS: dict[str, str] = {
    "mfcc": "encoders.mfcc:MFCCStats",
    "chroma": "encoders.chroma:ChromaStats",
    "chroma-keyinv": "encoders.keyinv:ChromaKeyInvariant",
    "deepchroma": "encoders.deepchroma:DeepChromaStats",
    "deepchroma-keyinv": "encoders.keyinv:DeepChromaKeyInvariant",
    "crepe": "encoders.crepe:CrepeEmbedding",
    "clap": "encoders.clap:ClapEncoder",
    "clap-music": "encoders.clap:ClapMusicEncoder",
    "music2latent": "encoders.music2latent:Music2LatentEncoder",
    "muq": "encoders.muq:MuQEncoder",
}


@dataclass(frozen=True)
class EncoderOptions:
    """How to build an encoder: where its weights are and how to run it."""

    weights: str | None = None  # explicit file or directory
    allow_download: bool = False
    device: str = "auto"  # auto | cpu | cuda
    batch_size: int = 8
    window: WindowPolicy | None = None  # overrides the card's default policy
    #: numeric precision of the forward passes: "fp32" (exact, the default) or "bf16" (autocast; opt-in, for
    #: encoders that offer it: ``PretrainedEncoder.precisions``). Part of the cache identity when not fp32.
    precision: str = "fp32"


#: every ``--precision`` value; what one encoder offers is ``precisions(name)``
PRECISIONS = ("fp32", "bf16")


class UnknownEncoder(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return self.args[0]


def names() -> list[str]:
    return list(ENCODERS)


def encoder_class(name: str) -> type[Encoder]:
    try:
        target = ENCODERS[name]
    except KeyError:
        raise UnknownEncoder(f"unknown encoder '{name}'; known encoders: {', '.join(ENCODERS)}") from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def card(name: str) -> ModelCard:
    return encoder_class(name).card


def precisions(name: str) -> tuple[str, ...]:
    """The ``--precision`` values encoder ``name`` computes in: ``("fp32",)`` for weight-free encoders and for
    models whose reduced-precision embeddings were not checked against fp32."""
    return tuple(getattr(encoder_class(name), "precisions", ("fp32",)))


def check_precision(name: str, options: EncoderOptions) -> None:
    """``EncoderUnavailable`` when ``options.precision`` is not one encoder ``name`` offers, saying why."""
    precision = options.precision or "fp32"
    if precision == "fp32":  # every encoder computes in fp32
        return
    if precision not in PRECISIONS:
        raise EncoderUnavailable(f"unknown precision '{precision}'; known: {', '.join(PRECISIONS)}")
    offered = precisions(name)
    if precision in offered:
        return
    cls = encoder_class(name)
    if cls.card.weights_id is None:
        raise EncoderUnavailable(
            f"--precision {precision} applies to neural encoders ({', '.join(_offering(precision))}); "
            f"'{name}' is weight-free and always computes in float32: use --precision fp32"
        )
    raise EncoderUnavailable(
        f"encoder '{name}' offers --precision {', '.join(offered)} only (its {precision} embeddings were not "
        f"checked against fp32); encoders offering {precision}: {', '.join(_offering(precision))}"
    )


def _offering(precision: str) -> list[str]:
    return [name for name in ENCODERS if precision in precisions(name)]


def availability(name: str, options: EncoderOptions | None = None) -> tuple[bool, str]:
    """Can ``name`` run here? Returns (ok, where its weights are / why not). Loads no model."""
    options = options or EncoderOptions()
    cls = encoder_class(name)
    try:
        check_precision(name, options)
        return True, cls.check_available(options)
    except EncoderUnavailable as error:
        return False, str(error)


def build(name: str, options: EncoderOptions | None = None) -> Encoder:
    """Build an encoder ready to embed; raises ``EncoderUnavailable`` with the fix when it cannot run."""
    options = options or EncoderOptions()
    cls = encoder_class(name)
    check_precision(name, options)
    cls.check_available(options)
    return cls(options)


def write_random_weights(name: str, directory: Path) -> Path:
    """Write a random-init checkpoint of ``name`` in its library's own format (tests, smoke runs)."""
    cls = encoder_class(name)
    if not hasattr(cls, "write_random_weights"):
        raise EncoderUnavailable(f"encoder '{name}' has no weights to write")
    return cls.write_random_weights(Path(directory))


def describe_all(options: EncoderOptions | None = None) -> list[dict[str, Any]]:
    rows = []
    for name in ENCODERS:
        model_card = card(name)
        ok, detail = availability(name, options)
        rows.append(
            {
                "name": name,
                "description": model_card.description,
                "sample_rate": model_card.sample_rate,
                "dim": model_card.dim,
                "window": model_card.window.describe(),
                "package": model_card.package or "-",
                "weights": model_card.weights_id or "none (weight-free)",
                "license": model_card.license,
                "runs_here": ok,
                "detail": detail,
            }
        )
    return rows

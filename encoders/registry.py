"""Encoder name → lazy factory. Importing this module imports no model package.

Adding an encoder = one file in ``encoders/`` defining an ``Encoder`` subclass + one entry below.
The encoder module itself must import heavy packages (torch models, laion_clap, …) only inside
methods, so that ``card``/``weights_spec`` can be read cheaply.

Besides the built-in names below, an encoder name can be (``encoder_class`` resolves them in this order):

* a **plug-in**: a name another package declares in the ``musicbench.encoders`` entry-point group
  (``encoders.plugins``; discovered without importing it, imported when used);
* ``hf:<repo-or-directory>[:layer-N|:layer-mean]``: a Hugging Face audio model (``encoders.hf``);
* ``package.module:Class``: any importable ``Encoder`` subclass, with no registration.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import Encoder, EncoderUnavailable, ModelCard, WindowPolicy
from .plugins import ENCODER_GROUP, Plugin, PluginError, discover, load_target

#: name users type → "module:Class"
ENCODERS: dict[str, str] = {
    "mfcc": "encoders.mfcc:MFCCStats",
    "chroma": "encoders.chroma:ChromaStats",
    "chroma-keyinv": "encoders.keyinv:ChromaKeyInvariant",
    "deepchroma": "encoders.deepchroma:DeepChromaStats",
    "deepchroma-keyinv": "encoders.keyinv:DeepChromaKeyInvariant",
    "tonal-timbre": "encoders.keyinv:TonalTimbre",
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
    #: ``hf:`` encoders: run a model's own Python code (config ``auto_map``, e.g. MERT); off unless asked for
    trust_remote_code: bool = False


#: every ``--precision`` value; what one encoder offers is ``precisions(name)``
PRECISIONS = ("fp32", "bf16")


class UnknownEncoder(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return self.args[0]


class PluginUnavailable(EncoderUnavailable):
    """A plug-in or ``module:Class`` encoder cannot be imported, or is not an encoder; the message says why."""


def names() -> list[str]:
    """The built-in encoders (``plugins()`` lists the installed plug-ins, without importing them)."""
    return list(ENCODERS)


def plugins(refresh: bool = False) -> dict[str, Plugin]:
    """Every ``musicbench.encoders`` entry point installed, by name; none is imported. A plug-in whose name is a
    built-in's, or another plug-in's, carries ``conflict`` (the built-in, or the first one, wins)."""
    return discover(ENCODER_GROUP, tuple(ENCODERS), refresh=refresh)


def plugin_names() -> list[str]:
    """The plug-in names usable as ``--encoder`` (no conflict)."""
    return [name for name, plugin in plugins().items() if not plugin.conflict]


def is_hf(name: str) -> bool:
    return name.startswith("hf:")


def is_class_path(name: str) -> bool:
    """``package.module:Class`` (a name with a colon that is not ``hf:``)."""
    return ":" in name and not is_hf(name)


def encoder_class(name: str) -> type[Encoder]:
    """The class behind an encoder name: built-in, plug-in, ``hf:…`` or ``module:Class`` (module docstring).
    ``UnknownEncoder`` for a plain name nobody declares; ``PluginUnavailable`` when a plug-in or class cannot be
    imported or is not an ``Encoder`` subclass with a ``ModelCard``."""
    if name in ENCODERS:
        module_name, class_name = ENCODERS[name].split(":")
        return getattr(importlib.import_module(module_name), class_name)
    if is_hf(name):
        from .hf import hf_encoder_class

        return hf_encoder_class(name)
    plugin = plugins().get(name)
    if plugin is not None:
        try:
            cls = plugin.load()
        except PluginError as error:
            raise PluginUnavailable(str(error)) from None
        return checked_class(cls, f"plug-in '{name}' ({plugin.source}, {plugin.target})")
    if is_class_path(name):
        try:
            cls = load_target(name)
        except Exception as error:  # noqa: BLE001 - whatever the user's module raises, it is reported in one line
            raise PluginUnavailable(f"cannot import encoder '{name}': {type(error).__name__}: {error}") from None
        return checked_class(cls, f"'{name}'")
    known = [*ENCODERS, *plugin_names()]
    raise UnknownEncoder(
        f"unknown encoder '{name}'; known encoders: {', '.join(known)} (or hf:<model>, or package.module:Class)"
    )


def protocol_problems(cls: Any) -> list[str]:
    """What keeps ``cls`` from being an encoder class: an ``Encoder`` subclass whose ``card`` is a ``ModelCard``
    with a positive integer sample rate and dim and a ``WindowPolicy`` (empty when it is one)."""
    if not isinstance(cls, type) or not issubclass(cls, Encoder):
        return [f"{cls!r} is not a subclass of encoders.base.Encoder"]
    card = getattr(cls, "card", None)
    if not isinstance(card, ModelCard):
        return [f"{cls.__name__}.card is {type(card).__name__}, not an encoders.base.ModelCard"]
    problems = []
    for field_name in ("sample_rate", "dim"):
        value = getattr(card, field_name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            problems.append(f"card.{field_name} is {value!r}, not a positive int")
    if not isinstance(card.window, WindowPolicy):
        problems.append(f"card.window is {type(card.window).__name__}, not a WindowPolicy")
    if getattr(cls, "__abstractmethods__", None):
        problems.append(f"{cls.__name__} does not implement {', '.join(sorted(cls.__abstractmethods__))}")
    return problems


def checked_class(cls: Any, what: str) -> type[Encoder]:
    problems = protocol_problems(cls)
    if problems:
        raise PluginUnavailable(f"{what} is not an encoder: " + "; ".join(problems))
    return cls


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


def _check_available(cls: type[Encoder], options: EncoderOptions) -> str:
    """``cls.check_available(options)``; an encoder class without that hook (a plain ``Encoder`` subclass of a
    plug-in) is taken to run anywhere."""
    check = getattr(cls, "check_available", None)
    return check(options) if check is not None else "ready (no check_available)"


def availability(name: str, options: EncoderOptions | None = None) -> tuple[bool, str]:
    """Can ``name`` run here? Returns (ok, where its weights are / why not). Loads no model. A plug-in or class
    that cannot be imported is (False, why)."""
    options = options or EncoderOptions()
    try:
        cls = encoder_class(name)
        check_precision(name, options)
        return True, _check_available(cls, options)
    except EncoderUnavailable as error:
        return False, str(error)


def build(name: str, options: EncoderOptions | None = None) -> Encoder:
    """Build an encoder ready to embed; raises ``EncoderUnavailable`` with the fix when it cannot run."""
    options = options or EncoderOptions()
    cls = encoder_class(name)
    check_precision(name, options)
    _check_available(cls, options)
    return construct(cls, options)


def construct(cls: type[Encoder], options: EncoderOptions) -> Encoder:
    """``cls(options)``; a plug-in class whose constructor takes no argument is built with ``cls()``."""
    import inspect

    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return cls(options)
    takes_none = all(
        p.kind in (p.VAR_KEYWORD,) or (p.kind is p.KEYWORD_ONLY and p.default is not p.empty) for p in parameters
    )
    return cls() if takes_none else cls(options)


def write_random_weights(name: str, directory: Path) -> Path:
    """Write a random-init checkpoint of ``name`` in its library's own format (tests, smoke runs)."""
    cls = encoder_class(name)
    if not hasattr(cls, "write_random_weights"):
        raise EncoderUnavailable(f"encoder '{name}' has no weights to write")
    return cls.write_random_weights(Path(directory))


def describe(name: str, options: EncoderOptions | None = None) -> dict[str, Any]:
    """One encoder's listing row: its card and whether it runs here. Imports the encoder's module (a plug-in's
    too); a plug-in or class that cannot be imported is a row with ``runs_here`` False and the error."""
    plugin = plugins().get(name) if name not in ENCODERS else None
    row: dict[str, Any] = {"name": name, "source": plugin.source if plugin else _source(name)}
    try:
        model_card = encoder_class(name).card
    except EncoderUnavailable as error:
        return {**row, "description": "(cannot be loaded)", "runs_here": False, "detail": str(error)}
    ok, detail = availability(name, options)
    if model_card.dim <= 0:  # a placeholder card (an hf: model not found): nothing to show but why
        return {**row, "description": model_card.description, "runs_here": ok, "detail": detail}
    return {
        **row,
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


def _source(name: str) -> str:
    if name in ENCODERS:
        return "musicbench (built-in)"
    return "Hugging Face (transformers)" if is_hf(name) else "class path (not registered)"


def describe_all(options: EncoderOptions | None = None) -> list[dict[str, Any]]:
    """Every built-in encoder's row (``describe``); plug-ins are listed by ``describe_plugins``."""
    return [describe(name, options) for name in ENCODERS]


def describe_plugins(load: bool = False, options: EncoderOptions | None = None) -> list[dict[str, Any]]:
    """Every installed plug-in's row. Without ``load`` none is imported: name, source distribution, entry point,
    and whether its module can be found (a missing module is reported as unavailable). With ``load`` each is
    imported and described in full (``describe``): one that fails to import is unavailable, with its error."""
    rows = []
    for name, plugin in plugins().items():
        base = {"name": name, "source": plugin.source, "target": plugin.target}
        if plugin.conflict:
            rows.append({**base, "runs_here": False, "loaded": False, "detail": plugin.conflict})
            continue
        if load:
            rows.append({**describe(name, options), **base, "loaded": True})
            continue
        found, why = plugin.module_found()
        rows.append({**base, "runs_here": None if found else False, "loaded": False, "detail": why})
    return rows

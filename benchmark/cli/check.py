"""``musicbench check-encoder`` (the encoder contract, runnable on anyone's encoder) and ``musicbench metrics``."""

from __future__ import annotations

import sys

import click

from .checks import hf_names
from .common import friendly
from .group import main
from .options import HF_OPTIONS, WINDOW_OPTIONS, choice_option, optional_path


@main.command("check-encoder")
@click.argument("encoder")
@click.option("--weights", callback=optional_path, help="Encoder weights: checkpoint file or directory.")
@HF_OPTIONS[0]
@HF_OPTIONS[1]
@click.option("--allow-download", is_flag=True, help="Let model packages download missing weights.")
@choice_option("--device", choices=["auto", "cpu", "cuda"], default="auto")
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True, help="Windows per call.")
@WINDOW_OPTIONS[0]
@WINDOW_OPTIONS[1]
@WINDOW_OPTIONS[2]
@click.option(
    "--seconds",
    type=click.FloatRange(min=0.1, max=60),
    default=1.0,
    show_default=True,
    help="Length scale of the synthetic test audio (smaller is quicker for slow models).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the synthetic audio.")
@friendly
def check_encoder(encoder, weights, hf_layer, trust_remote_code, allow_download, device, batch_size, **kw) -> None:
    """Check that ENCODER meets musicbench's encoder contract: a built-in or plug-in name, package.module:Class, or
    hf:<model> (the same names --encoder takes).

    Checks the protocol and model card, that it builds, output shape and dtype, finite values, determinism, batched
    = one at a time, input shorter than a window, audio from 8 / 22.05 / 44.1 / 48 kHz, stereo files, silence and the
    harness's decode path, and measures its speed in audio seconds per second; prints a pass/fail table.

    Exit status: 0 every check passed; 1 a check failed (named in the table); 2 ENCODER is unknown or an option
    is refused.
    """
    import os

    from encoders.registry import EncoderOptions

    from ..config import check_window, window_policy
    from ..encoder_check import check_encoder as run_check

    name = hf_names([encoder], hf_layer)[0]
    window_options = (kw["window_seconds"], kw["hop_seconds"], kw["min_tail_seconds"])
    check_window(*window_options)
    window = window_policy(*window_options)
    if allow_download:
        os.environ["MUSICBENCH_ALLOW_DOWNLOAD"] = "1"
    options = EncoderOptions(
        weights=str(weights) if weights else None,
        allow_download=allow_download,
        device=device,
        batch_size=batch_size,
        window=window,
        trust_remote_code=trust_remote_code,
    )
    click.echo(f"Checking encoder {name} ...", err=True)
    report = run_check(name, options, seconds=kw["seconds"], rng_seed=kw["seed"])
    click.echo(report.table())
    if not report.ok:
        sys.exit(1)


@main.command("metrics")
@click.option("--detail", is_flag=True, help="Import the plug-in metrics too, and say whether each can run here.")
def list_metrics(detail) -> None:
    """List the pair metrics: built-in ones, and plug-ins (musicbench.metrics entry points) with their package."""
    from metrics import registry

    for name in registry.PAIR_METRICS:
        cls = registry.metric_class(name)
        click.echo(f"{name:<16} built-in   columns {', '.join(cls.columns)}{'' if cls.in_auto else ' (opt-in)'}")
    for name, plugin in registry.plugins().items():
        head = f"{name:<16} plug-in from {plugin.source} ({plugin.target})"
        if plugin.conflict:
            click.echo(f"{head}\n    {click.style('unavailable', fg='red')}: {plugin.conflict}")
            continue
        if not detail:
            found, why = plugin.module_found()
            status = click.style("not loaded", fg="yellow") if found else click.style("unavailable", fg="red")
            click.echo(f"{head}\n    {status}: {why}")
            continue
        try:
            cls = registry.metric_class(name)
            ok, why = True, registry.create(name).check_available()
        except Exception as error:  # noqa: BLE001 - a broken plug-in is listed, never a crash
            ok, why, cls = False, str(error), None
        columns = f" columns {', '.join(cls.columns)}{'' if cls.in_auto else ' (opt-in)'}" if cls else ""
        status = click.style("ready", fg="green") if ok else click.style("unavailable", fg="red")
        click.echo(f"{head}{columns}\n    {status}: {why}")

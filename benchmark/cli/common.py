"""What the commands share: the one-line form of user errors (``Refused``, ``friendly``), the parsing of option values
(``NAME=PATH``, comma lists, the ``UNSET`` words of ``mlflow run`` parameters) and what they print.

The shared options and the callbacks that read their values are ``options.py``; their checks before any work
``checks.py``; ``run`` / ``suite``'s options turned into a ``RunConfig``, and ``musicbench run``'s one run,
``run_config.py``.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import click

from ..config import OptionError
from ..store import StoreError

DEMO_ENCODERS = "mfcc,chroma"
#: `musicbench demo --scenario robustness`: the plain baselines beside their transposition-invariant forms
DEMO_SCENARIO_ENCODERS = "mfcc,chroma,chroma-keyinv,tonal-timbre"


def user_errors():
    """The exception types that are the user's to fix: shown as one line, no traceback."""
    from encoders.base import EncoderUnavailable
    from encoders.registry import UnknownEncoder
    from metrics.base import MetricUnavailable

    from ..data import DatasetError
    from ..index import IndexUnavailable
    from ..pipeline import RunError
    from ..ray_engine import EngineUnavailable

    return (
        DatasetError,
        EncoderUnavailable,
        UnknownEncoder,
        MetricUnavailable,
        RunError,
        EngineUnavailable,
        IndexUnavailable,
    )


class Refused(click.ClickException):
    """Refused at the edge, before any work (e.g. an unusable tracking store): one line, exit status 2."""

    exit_code = 2


def friendly(fn):
    """User errors that reach a command (raised before any run started: a run's own failure is reported by the run
    path) are one line with exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (StoreError, OptionError) as error:
            raise Refused(str(error)) from None
        except user_errors() as error:
            raise Refused(str(error)) from None

    return wrapper


def name_path_pairs(values: tuple[str, ...], what: str, option: str) -> dict[str, str]:
    """``NAME=PATH`` options (repeatable) → {name: path}; '' (an empty ``mlflow run`` parameter) is skipped."""
    out = {}
    for value in values:
        if unset(value):
            continue
        name, sep, path = value.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise click.BadParameter(f"expected {what}=PATH, got '{value}'", param_hint=option)
        out[name.strip()] = str(Path(path.strip()).expanduser())
    return out


def comma_list(text: str | None) -> list[str]:
    """``a, b,,a`` → ``[a, b]``: stripped, empty parts dropped, duplicates dropped in order."""
    return list(dict.fromkeys(part.strip() for part in (text or "").split(",") if part.strip()))


#: the words an ``mlflow run`` parameter uses for "not given" (an empty parameter would be logged as the literal
#: ``''``): ``demo`` (``--refs`` / ``--targets``: the demo set), ``none``, ``default``, ``headline``, and ``/dev/null``
#: (``--weights``: MLflow's ``path`` parameters must name something that exists). A folder with one of these names is
#: given as ``./none``.
UNSET = ("", "demo", "none", "default", "headline", os.devnull)


def unset(value) -> bool:
    return value is None or str(value).strip() in UNSET


def echo_comparison(outcome) -> None:
    """A ``compare.Outcome`` on the terminal: the markdown table, then its warnings and where the files are."""
    click.echo(outcome.comparison.markdown())
    for warning in outcome.comparison.warnings:
        click.echo(f"Warning: {warning}", err=True)
    click.echo(f"Comparison files: {outcome.out_dir}", err=True)


def shown_tracking_uri() -> str:
    from ..store import tracking_uri

    return tracking_uri()

"""What describes a run, as MLflow params and tags: the config's params logged once each (``mlflow run``'s raw values
kept), the run's inputs in their canonical form, and the versions of the packages it ran with."""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version

from .config import RunConfig
from .tracking import system_metrics_wanted, tag_text

TRACKED_PACKAGES = (
    "musicbench",
    "mlflow",
    "numpy",
    "scipy",
    "librosa",
    "soundfile",
    "soxr",
    "scikit-learn",
    "pandas",
    "torch",
    "transformers",
)


def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """``version.<name>`` of each tracked distribution that is installed. Versions come from the ``<name>-<version>
    .dist-info`` folder names on ``sys.path`` (one listing per folder, first match wins, as in ``importlib.metadata``:
    ≈2 ms instead of ≈100 ms of parsing METADATA files); a name found no other way asks ``importlib.metadata``."""
    import re
    import sys

    def key(name: str) -> str:
        return re.sub(r"[-_.]+", "_", name).lower()

    installed: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for folder in names:
            if folder.endswith(".dist-info"):
                name, sep, found = folder[: -len(".dist-info")].partition("-")
                if sep:
                    installed.setdefault(key(name), found)
    out = {}
    for name in TRACKED_PACKAGES + extra:
        try:
            out[f"version.{name}"] = installed.get(key(name)) or version(name)
        except PackageNotFoundError:
            continue
    return out


#: params that describe this machine, not the run: recorded as tags ``path.<name>`` (a diff of two runs' params then
#: shows what differs between the runs, not between the machines they ran on)
MACHINE_PARAMS = ("cache_dir",)
#: tag prefix of a value of ours for a param that ``mlflow run`` had already logged with its raw ``-P`` value (e.g.
#: ``refs=demo`` → ``resolved.refs=/…/demo/v1/refs``); params are immutable, and a tag keeps the params of a run
#: made with ``mlflow run`` and with ``musicbench run`` the same set
RESOLVED_TAG = "resolved"


def log_params_once(params: dict[str, object], fill_only: bool = False) -> None:
    """Log params, each once (MLflow params are immutable).

    A param already logged with another value (``mlflow run`` logs the raw ``-P`` values first, e.g. ``refs=demo``)
    is kept, and ours goes to the tag ``resolved.<name>``; with ``fill_only`` it is dropped instead (the run's inputs
    in their canonical form, logged so that every run has the same params whichever way it was started).
    ``MACHINE_PARAMS`` become ``path.<name>`` tags.
    """
    import mlflow

    existing = mlflow.get_run(mlflow.active_run().info.run_id).data.params
    out, tags = {}, {}
    for key, value in params.items():
        text = str(value)[:6000]
        if key in MACHINE_PARAMS:
            tags[f"path.{key}"] = tag_text(text)
        elif key in existing and existing[key] != text:
            if not fill_only:
                tags[f"{RESOLVED_TAG}.{key}"] = tag_text(text)
        elif key not in existing:
            out[key] = text
    if out:
        mlflow.log_params(out)
    if tags:
        mlflow.set_tags(tags)


def params_of(config: RunConfig) -> dict[str, object]:
    """The config's params, flags written as ``true``/``false`` as the MLproject parameters give them."""
    return {**config.as_params(), "allow_download": str(bool(config.allow_download)).lower()}


def run_inputs(config: RunConfig) -> dict[str, object]:
    """The run's inputs under the names and in the canonical form of the MLproject parameters (``none`` /
    ``default`` / ``demo`` for an option not given: MLflow would log an empty parameter as the literal ``''``)."""
    return {
        "weights": config.weights or "default",
        "window": config.window_seconds if config.window_seconds is not None else "default",
        "hop": config.hop_seconds if config.hop_seconds is not None else "default",
        "min_tail": config.min_tail_seconds if config.min_tail_seconds is not None else "default",
        "index": config.index.kind,
        "scenario": config.scenario or "none",
        "deformations": ",".join(config.deformations) or "default",
        "query_seconds": config.query_seconds,
        "allow_download": str(bool(config.allow_download)).lower(),
        "system_metrics": str(system_metrics_wanted()).lower(),
    }

"""Where runs are recorded: the MLflow tracking store, and the experiment a run goes to.

Default store: ``sqlite:///<cwd>/mlruns/mlflow.db`` with artifacts in ``mlruns/artifacts`` (the card's ``mlruns/``
layout); ``MLFLOW_TRACKING_URI`` overrides.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def default_tracking_uri() -> str:
    return "sqlite:///" + str((Path.cwd() / "mlruns" / "mlflow.db").resolve())


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Serialise the first touch of a local sqlite store across processes.

    MLflow creates and migrates the tables on first use; two runs starting at once on a fresh store would both
    migrate and one would crash (alembic "expected to match one row"), and both could create the same
    experiment. A lock file next to the database makes the second one wait a moment instead.
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(uri[len("sqlite:///") :] + ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def configure(experiment: str) -> str:
    """Point MLflow at the store and return the experiment id (created under mlruns/ when missing)."""
    import mlflow

    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    with _store_lock(uri):
        found = mlflow.get_experiment_by_name(experiment)
        if found is not None:
            return found.experiment_id
        artifact_location = None  # other stores: the server's default artifact root
        if uri.startswith("sqlite:///"):  # keep artifacts beside the database (mlruns/artifacts by default)
            artifact_location = (Path(uri[len("sqlite:///") :]).parent / "artifacts" / experiment).resolve().as_uri()
        return mlflow.create_experiment(experiment, artifact_location=artifact_location)

"""Reading runs back from MLflow: the client, a run's encoder, an experiment's encoder runs.

``compare``, ``regress`` and the CLI read through here; every write is in a ``tracking*.py`` module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

ENCODER_TAG = "musicbench.encoder"


class SelectionError(ValueError):
    """The runs asked for cannot be found or used (the message says which and why)."""


class RunNotFound(SelectionError):
    """A run id that the tracking store does not know (the message names it)."""


def client():
    """An ``MlflowClient`` on musicbench's tracking store (``MLFLOW_TRACKING_URI`` or ``./mlruns/mlflow.db``)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from .store import tracking_uri

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # load_table downloads quietly
    mlflow.set_tracking_uri(tracking_uri())
    return MlflowClient()


def get_run(mlflow_client, run_id: str, what: str = "run"):
    """The run, or ``RunNotFound`` with a one-line message (``what`` names its role, e.g. "baseline run")."""
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.get_run(run_id)
    except MlflowException as error:
        raise RunNotFound(f"{what} {run_id} not found: {error.message}") from None


def encoder_of(run) -> str:
    return run.data.tags.get(ENCODER_TAG) or run.data.params.get("encoder") or run.info.run_name


def latest_first(runs: list) -> list:
    return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.end_time or 0), reverse=True)


def experiment_ids(mlflow_client, experiment: str | None) -> list[str]:
    """The experiment named ``experiment`` (``SelectionError`` when it does not exist), or with None every active
    experiment of the store: musicbench runs are found by their ``musicbench.encoder`` tag wherever they were
    recorded (a bare ``mlflow run`` records into MLflow's "Default" experiment)."""
    from mlflow.entities import ViewType

    if experiment:
        found = mlflow_client.get_experiment_by_name(experiment)
        if found is None:
            raise SelectionError(f"experiment '{experiment}' not found")
        return [found.experiment_id]
    ids, token = [], None
    while True:
        page = mlflow_client.search_experiments(ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)
        ids += [e.experiment_id for e in page]
        token = page.token
        if not token:
            return ids


def where(experiment: str | None) -> str:
    """How messages name the runs searched."""
    return f"experiment '{experiment}'" if experiment else "the tracking store (every experiment)"


def encoder_runs(mlflow_client, experiment_id, status: str | None = "FINISHED") -> list:
    """Every encoder run (tagged ``musicbench.encoder``) of an experiment id (or a list of them), newest first."""
    from mlflow.entities import ViewType

    ids = [experiment_id] if isinstance(experiment_id, str) else list(experiment_id)
    filters = [f"tags.`{ENCODER_TAG}` != ''"]
    if status:
        filters.append(f"attributes.status = '{status}'")
    runs = []
    for start in range(0, len(ids), 100):  # the stores take a bounded list of experiments per search
        token = None
        while True:
            page = mlflow_client.search_runs(
                ids[start : start + 100],
                " and ".join(filters),
                ViewType.ACTIVE_ONLY,
                1000,
                ["attributes.start_time DESC"],
                token,
            )
            runs.extend(page)
            token = page.token
            if not token:
                break
    return latest_first(runs)


def child_runs(mlflow_client, parent_run) -> list:
    """The nested runs of ``parent_run``, in the order they were started."""
    children = latest_first(
        mlflow_client.search_runs(
            [parent_run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_run.info.run_id}'", max_results=1000
        )
    )
    children.reverse()
    return children


@dataclass
class Selection:
    runs: list  # mlflow Run objects, FINISHED
    parent_run_id: str | None = None
    experiment_id: str | None = None
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (encoder, run id, why)


def select_runs(
    client, parent: str | None = None, experiment: str | None = None, run_ids: list[str] | None = None
) -> Selection:
    """Resolve at most one of parent / run_ids / experiment into the runs to compare; none: the latest FINISHED run
    of every encoder in the whole store (``experiment_ids``)."""
    given = [name for name, value in (("--parent", parent), ("--runs", run_ids), ("--experiment", experiment)) if value]
    if len(given) > 1:
        raise SelectionError(
            f"give exactly one of --parent, --runs, --experiment, or none (every experiment); got {', '.join(given)}"
        )
    if parent:
        return _children_of(client, get_run(client, parent, "parent run"))
    if run_ids:
        runs = [get_run(client, run_id) for run_id in run_ids]
        for run in runs:
            if run.info.status != "FINISHED":
                raise SelectionError(f"run {run.info.run_id} ({encoder_of(run)}) is {run.info.status}, not FINISHED")
        return Selection(runs, None, runs[0].info.experiment_id)
    ids = experiment_ids(client, experiment)
    latest: dict[str, object] = {}
    for run in encoder_runs(client, ids):
        latest.setdefault(encoder_of(run), run)
    if not latest:
        raise SelectionError(f"{where(experiment)} has no FINISHED encoder runs")
    runs = list(reversed(list(latest.values())))
    return Selection(runs, None, ids[0] if experiment else runs[-1].info.experiment_id)


def _children_of(client, parent_run) -> Selection:
    """The FINISHED children of a suite parent; the others are listed as skipped with their reason."""
    parent = parent_run.info.run_id
    children = child_runs(client, parent_run)
    if not children:
        raise SelectionError(f"run {parent} has no child runs (is it a suite parent?)")
    selection = Selection([], parent, parent_run.info.experiment_id)
    for child in children:
        if child.info.status == "FINISHED":
            selection.runs.append(child)
        else:
            reason = child.data.tags.get("failure_reason", "")
            selection.skipped.append((encoder_of(child), child.info.run_id, f"{child.info.status} {reason}"))
    if not selection.runs:
        raise SelectionError(
            f"no child of {parent} finished: " + "; ".join(f"{e} {why}" for e, _, why in selection.skipped)
        )
    return selection

"""Everything a report shows, read back through MLflow (``benchmark/runs.py``) and built by ``compare.build``.

- the runs: a suite parent's finished children (``--parent``), exactly these runs (``--runs``), or the latest finished
  run of every encoder of an experiment (``--experiment``); the children that did not finish, with their reason;
- the parent run the report is logged to: ``--parent``, else the one parent the runs share (none: not logged);
- the comparison (``compare.build``: the table with CIs and paired tests, per-target values, the figures);
- each run's top-k table (``tables/topk.json``) and its own figures (``figures/*.png``);
- each target's group, when the targets carry one (``groups.target_groups``).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..runs import child_runs, encoder_of, get_run, select_runs

TOPK_TABLE = "tables/topk.json"
RUN_FIGURES = ("figures/top1_similarity.png", "figures/similarity_heatmap.png")
PARENT_TAG = "mlflow.parentRunId"


@dataclass
class ReportData:
    runs: list  # FINISHED mlflow Runs, in the comparison's order
    labels: list[str]
    comparison: object  # compare.Comparison
    parent: object | None = None  # the suite parent Run, when there is one
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (encoder, run id, status and reason)
    topk: dict[str, pd.DataFrame] = field(default_factory=dict)  # label → top-k table
    run_figures: dict[str, dict[str, bytes]] = field(default_factory=dict)  # label → artifact name → PNG
    groups: dict[str, str] | None = None  # target → group
    group_source: str = ""  # how the groups were found (said in the report)
    experiment_name: str = ""


def collect(
    client, parent: str | None = None, run_ids: list[str] | None = None, experiment: str | None = None
) -> ReportData:
    """Read the runs of a report; ``runs.SelectionError`` when they cannot be found or none finished."""
    from ..compare import build
    from .groups import target_groups

    selection = select_runs(client, parent=parent, experiment=experiment, run_ids=run_ids)
    comparison = build(client, selection.runs)
    data = ReportData(selection.runs, list(comparison.labels), comparison, failed=list(selection.skipped))
    parent_id = selection.parent_run_id or _shared_parent(selection.runs)
    if parent_id:
        data.parent = get_run(client, parent_id, "parent run")
        if not selection.parent_run_id:  # --runs / --experiment: the parent's other children that did not finish
            data.failed = [
                (encoder_of(c), c.info.run_id, f"{c.info.status} {c.data.tags.get('failure_reason', '')}".strip())
                for c in child_runs(client, data.parent)
                if c.info.status != "FINISHED"
            ]
    experiment_id = selection.experiment_id or selection.runs[0].info.experiment_id
    data.experiment_name = client.get_experiment(experiment_id).name
    data.topk = _topk_tables(client, data.runs, data.labels)
    data.run_figures = {label: _run_figures(client, run) for run, label in zip(data.runs, data.labels)}
    data.groups, data.group_source = target_groups(data.runs, comparison.per_target)
    return data


def _shared_parent(runs: list) -> str | None:
    parents = {run.data.tags.get(PARENT_TAG) for run in runs}
    return parents.pop() if len(parents) == 1 else None


def _topk_tables(client, runs: list, labels: list[str]) -> dict[str, pd.DataFrame]:
    """Each run's top-k table (``MlflowClient.load_table``); a run without one gets an empty table."""
    from mlflow.exceptions import MlflowException

    out = {}
    for run, label in zip(runs, labels):
        try:
            out[label] = client.load_table(run.info.experiment_id, TOPK_TABLE, run_ids=[run.info.run_id])
        except MlflowException:
            out[label] = pd.DataFrame()
    return out


def _run_figures(client, run) -> dict[str, bytes]:
    """A run's own figures as PNG bytes (those it logged)."""
    out = {}
    with tempfile.TemporaryDirectory() as folder:
        for name in RUN_FIGURES:
            try:
                path = Path(client.download_artifacts(run.info.run_id, name, folder))
            except Exception:  # noqa: BLE001, S112 - a figure the run did not log is left out
                continue
            if path.is_file():
                out[name] = path.read_bytes()
    return out

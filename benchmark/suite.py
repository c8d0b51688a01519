"""Several encoders on one dataset: one parent MLflow run, one nested child run per encoder, then the comparison.

Rules:

- Every encoder gets its own child run (``nested=True``, tagged ``musicbench.suite.parent``). The child is
  started *before* the encoder is prepared, so an encoder that cannot even be built (unknown name, missing
  weights) still leaves a FAILED child with the ``failure_reason`` tag. Any exception in one encoder ends only
  that child FAILED; the next encoder runs. Ctrl-C / SIGTERM ends the child and the parent KILLED and stops.
- Children share the embedding cache (``cache_dir``), so a re-run of the suite embeds nothing twice.
- The parent (tags ``musicbench.suite=true``, ``musicbench.suite.encoders``) records each child's outcome: tags
  ``musicbench.suite.finished`` / ``musicbench.suite.failed`` (encoder lists), ``musicbench.suite.child.<enc>``
  (run id), metrics ``suite_children_finished`` / ``suite_children_failed`` and the table
  ``tables/suite_children.json`` (encoder, run_id, status, failure_reason, seconds).
- The parent ends FINISHED when at least one child finished, FAILED (reason: every child's failure) when none
  did. After the children, the finished ones are compared (``compare.py``) and the comparison is logged to the
  parent; a comparison error is tagged ``musicbench.comparison.failure_reason`` on the parent and does not turn
  it FAILED (its children's results stand).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .config import RunConfig
from .data import Dataset
from .tracking_run import RunOutcome

SUITE_TAG = "musicbench.suite"


class SuiteFailed(RuntimeError):
    """No encoder of the suite finished."""


@dataclass
class SuiteResult:
    parent_run_id: str
    experiment_id: str
    children: list[RunOutcome] = field(default_factory=list)
    comparison: object | None = None  # compare.Outcome
    comparison_error: str | None = None

    @property
    def finished(self) -> list[RunOutcome]:
        return [c for c in self.children if c.status == "FINISHED"]

    @property
    def failed(self) -> list[RunOutcome]:
        return [c for c in self.children if c.status != "FINISHED"]

    @property
    def ok(self) -> bool:
        return not self.failed and self.comparison_error is None


def run_suite(
    base: RunConfig,
    encoders: list[str],
    weights: dict[str, str] | None = None,
    progress: bool = True,
    run_name: str | None = None,
    out_dir: Path | None = None,
    echo: Callable[[str], None] = print,
    dataset: Dataset | None = None,
) -> SuiteResult:
    """Run ``encoders`` on ``base``'s dataset as children of one parent run, then compare the finished ones.

    Each child goes through ``tracking_run.run_and_record``, exactly like ``musicbench run``.
    Raises ``SuiteFailed`` (after ending the parent FAILED) when no child finished.
    """
    import mlflow

    from . import compare, tracking, tracking_params, tracking_run

    if not encoders:
        raise ValueError("no encoders given")
    weights = weights or {}
    unknown_weights = sorted(set(weights) - set(encoders))
    if unknown_weights:
        raise ValueError(f"--weights given for encoders not in the suite: {', '.join(unknown_weights)}")
    tags = {SUITE_TAG: "true", f"{SUITE_TAG}.encoders": ",".join(encoders)}
    with tracking.started_run(base.experiment, run_name or "suite", tags=tags) as parent:
        parent_id = parent.info.run_id
        result = SuiteResult(parent_id, parent.info.experiment_id)
        experiment = mlflow.get_experiment(parent.info.experiment_id).name  # children live with their parent
        params = {key: value for key, value in base.as_params().items() if key != "encoder"}
        tracking_params.log_params_once({**params, "encoders": ",".join(encoders)})
        for encoder in encoders:
            config = base.replace(encoder=encoder, weights=weights.get(encoder), run_name=None, experiment=experiment)
            echo(f"[{encoder}] running (child of {parent_id})")
            outcome = tracking_run.run_and_record(
                config, dataset, progress, nested=True, tags={f"{SUITE_TAG}.parent": parent_id}
            )
            result.children.append(outcome)
            if outcome.status == "FINISHED":
                echo(f"[{encoder}] {tracking_run.summary_line(outcome.result)}  [run {outcome.run_id}]")
            else:
                echo(f"[{encoder}] FAILED: {outcome.failure_reason}  [run {outcome.run_id}]")

        tracking.record_suite(result.children, SUITE_TAG)
        if not result.finished:
            raise SuiteFailed(
                "every encoder failed: " + "; ".join(f"{c.encoder}: {c.failure_reason}" for c in result.children)
            )
        try:
            result.comparison = compare.compare(
                run_ids=[c.run_id for c in result.finished], out_dir=out_dir, log_run_id=parent_id
            )
        except Exception as error:  # noqa: BLE001 - the children's results stand; say why there is no comparison
            result.comparison_error = f"{type(error).__name__}: {error}"
            tracking.tag_active_run({f"{compare.COMPARISON_TAG}.failure_reason": result.comparison_error})
    return result

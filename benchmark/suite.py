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

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .config import RunConfig

SUITE_TAG = "musicbench.suite"


class SuiteFailed(RuntimeError):
    """No encoder of the suite finished."""


@dataclass
class ChildOutcome:
    encoder: str
    run_id: str | None
    status: str  # FINISHED | FAILED
    failure_reason: str = ""
    seconds: float = 0.0
    summary: str = ""


@dataclass
class SuiteResult:
    parent_run_id: str
    experiment_id: str
    children: list[ChildOutcome] = field(default_factory=list)
    comparison: object | None = None  # compare.Outcome
    comparison_error: str | None = None

    @property
    def finished(self) -> list[ChildOutcome]:
        return [c for c in self.children if c.status == "FINISHED"]

    @property
    def failed(self) -> list[ChildOutcome]:
        return [c for c in self.children if c.status != "FINISHED"]

    @property
    def ok(self) -> bool:
        return not self.failed and self.comparison_error is None


def parse_encoders(text: str) -> list[str]:
    return list(dict.fromkeys(e.strip() for e in (text or "").split(",") if e.strip()))




def run_child(config: RunConfig, experiment: str, parent_run_id: str, progress: bool) -> ChildOutcome:
    """One encoder as a nested run: start the run, then prepare (so build failures are recorded), run, log."""
    from . import pipeline, tracking

    started = time.perf_counter()
    run_id = None
    tags = {f"{SUITE_TAG}.parent": parent_run_id, "musicbench.encoder": config.encoder}
    try:
        with tracking.started_run(experiment, config.run_name or config.encoder, nested=True, tags=tags) as run:
            run_id = run.info.run_id
            tracking.log_params_once({**config.as_params(), "weights": config.weights or "default"})
            prepared = pipeline.prepare(config)
            try:
                result = pipeline.run(config, progress=progress, prepared=prepared)
                tracking.log_result(result)
            finally:
                prepared.encoder.close()
    except Exception as error:  # noqa: BLE001 - any failure of one encoder is that child's, not the suite's
        return ChildOutcome(config.encoder, run_id, "FAILED", f"{type(error).__name__}: {error}",
                            time.perf_counter() - started)
    return ChildOutcome(config.encoder, run_id, "FINISHED", "", time.perf_counter() - started,
                        tracking.summary_line(result))


def children_table(children: list[ChildOutcome]) -> pd.DataFrame:
    return pd.DataFrame([{"encoder": c.encoder, "run_id": c.run_id or "", "status": c.status,
                          "failure_reason": c.failure_reason, "seconds": round(c.seconds, 3)} for c in children],
                        columns=["encoder", "run_id", "status", "failure_reason", "seconds"])


def run_suite(base: RunConfig, encoders: list[str], weights: dict[str, str] | None = None, progress: bool = True,
              run_name: str | None = None, out_dir: Path | None = None,
              echo: Callable[[str], None] = print) -> SuiteResult:
    """Run ``encoders`` on ``base``'s dataset as children of one parent run, then compare the finished ones.

    Raises ``SuiteFailed`` (after ending the parent FAILED) when no child finished.
    """
    import mlflow

    from . import compare, tracking

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
        tracking.log_params_once({**params, "encoders": ",".join(encoders)})
        for encoder in encoders:
            config = base.replace(encoder=encoder, weights=weights.get(encoder), run_name=None)
            echo(f"[{encoder}] running (child of {parent_id})")
            outcome = run_child(config, experiment, parent_id, progress)
            result.children.append(outcome)
            if outcome.status == "FINISHED":
                echo(f"[{encoder}] {outcome.summary}  [run {outcome.run_id}]")
            else:
                echo(f"[{encoder}] FAILED: {outcome.failure_reason}  [run {outcome.run_id}]")

        mlflow.set_tags({f"{SUITE_TAG}.finished": ",".join(c.encoder for c in result.finished) or "none",
                         f"{SUITE_TAG}.failed": ",".join(c.encoder for c in result.failed) or "none",
                         **{f"{SUITE_TAG}.child.{c.encoder}": c.run_id or "none" for c in result.children}})
        mlflow.log_metrics({"suite_children_finished": len(result.finished),
                            "suite_children_failed": len(result.failed)})
        mlflow.log_table(children_table(result.children), "tables/suite_children.json")
        if not result.finished:
            raise SuiteFailed("every encoder failed: " + "; ".join(f"{c.encoder}: {c.failure_reason}"
                                                                   for c in result.children))
        try:
            result.comparison = compare.compare(run_ids=[c.run_id for c in result.finished], out_dir=out_dir,
                                                log_run_id=parent_id)
        except Exception as error:  # noqa: BLE001 - the children's results stand; say why there is no comparison
            result.comparison_error = f"{type(error).__name__}: {error}"
            mlflow.set_tag(f"{compare.COMPARISON_TAG}.failure_reason", result.comparison_error[:5000])
    return result

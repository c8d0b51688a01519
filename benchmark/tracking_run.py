"""The one run path: ``run_and_record`` starts the MLflow run, prepares the encoder and metrics, runs the pipeline,
records the result or the failure, and always closes the encoder. ``musicbench run``, ``suite``, ``mlflow run`` and
every engine call it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from .config import RunConfig
from .data import Dataset
from .pipeline import RunResult
from .runs import ENCODER_TAG
from .tracking import started_run
from .tracking_params import log_params_once, params_of, run_inputs
from .tracking_result import log_result


def prestart_figures() -> None:
    """A spare process imports matplotlib and warms it up in the background, for ``log_result`` to draw the figures
    there (``parallel.prestart_helper``); once per process. ``musicbench run`` and ``suite`` start it first thing,
    while this process imports MLflow (one core) and the workers' fork server its few modules; other callers of
    ``run_and_record`` when the pipeline starts."""
    from . import figures
    from .parallel import prestart_helper

    prestart_helper(figures.MODULES, figures.warm_up)


def summary_line(result: RunResult) -> str:
    keys = ("map", "mrr", "recall_at_" + str(result.config.k), "sim_top1_mean", "melody_acc_top1_mean")
    shown = ", ".join(f"{k}={result.metrics[k]:.3f}" for k in keys if k in result.metrics)
    return json.dumps(result.config.encoder) + f": {shown} ({len(result.failures)} failed files)"


@dataclass
class RunOutcome:
    """What became of one encoder's run: FINISHED with its result, or FAILED with the error (already recorded)."""

    encoder: str
    run_id: str | None
    status: str  # FINISHED | FAILED
    result: RunResult | None = None
    error: Exception | None = None
    seconds: float = 0.0

    @property
    def failure_reason(self) -> str:
        return f"{type(self.error).__name__}: {self.error}" if self.error is not None else ""


def run_and_record(
    config: RunConfig,
    dataset: Dataset | None = None,
    progress: bool = True,
    nested: bool = False,
    tags: dict[str, str] | None = None,
) -> RunOutcome:
    """Start the MLflow run, prepare the encoder and metrics, run the pipeline, record the result.

    The run starts before anything is built, so a failure of any kind (unknown encoder, missing weights, every
    file failing, a bug) ends it FAILED with its ``failure_reason`` and encoder tag, and is returned, not raised.
    The encoder is always closed. Ctrl-C / SIGTERM end the run KILLED and propagate.
    """
    from . import pipeline

    started = time.perf_counter()
    run_id = None
    try:
        with started_run(
            config.experiment,
            config.run_name or config.encoder,
            nested=nested,
            tags={ENCODER_TAG: config.encoder, **(tags or {})},
        ) as run:
            run_id = run.info.run_id
            log_params_once(params_of(config))
            log_params_once(run_inputs(config), fill_only=True)
            prepared = pipeline.prepare(config, dataset)
            prestart_figures()
            try:
                result = pipeline.run(config, progress=progress, prepared=prepared)
                log_result(result)
            finally:
                prepared.encoder.close()
    except Exception as error:  # noqa: BLE001 - recorded on the run and returned to the caller
        return RunOutcome(config.encoder, run_id, "FAILED", None, error, time.perf_counter() - started)
    return RunOutcome(config.encoder, run_id, "FINISHED", result, None, time.perf_counter() - started)

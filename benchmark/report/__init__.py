"""``musicbench report``: a suite's runs, read back from MLflow, as one self-contained document.

``collect.py`` reads the runs (through ``benchmark/runs.py``) and builds their comparison (``compare.build``, whose
figures are ``figures.py``'s); ``sections.py`` (with ``findings.py``, ``groups.py``, ``tracks.py``, ``tables.py``)
turns them into a ``document.Document``; ``html.py`` and ``markdown.py`` render it. The file is written to
``--out`` and logged under ``report/`` of the parent run (``tracking.log_report``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..runs import SelectionError

FORMATS = ("html", "md", "marp")
SUFFIX = {"html": ".html", "md": ".md", "marp": ".marp.md"}
#: the runs of a report cannot be found or read (the message says which and why)
ReportError = SelectionError


@dataclass
class ReportOutcome:
    path: Path
    logged_to: str | None  # the run the report was logged to (None: the runs have no parent run)
    failed: list[tuple[str, str, str]]  # children that did not finish: (encoder, run id, why)
    findings: list[str]


def render(data, fmt: str = "html") -> str:
    """The report of ``collect.ReportData`` in ``fmt`` (html, md or marp)."""
    from . import html, markdown, sections

    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r} (one of {', '.join(FORMATS)})")
    doc = sections.document(data)
    return html.render(doc) if fmt == "html" else markdown.render(doc, marp=fmt == "marp")


def default_out_dir(parent_run_id: str | None) -> Path:
    """``./comparison/<parent run id>``: beside the comparison files of the same suite."""
    return Path.cwd() / "comparison" / (parent_run_id or time.strftime("report-%Y%m%d-%H%M%S"))


def make_report(
    parent: str | None = None,
    run_ids: list[str] | None = None,
    experiment: str | None = None,
    fmt: str = "html",
    out_dir: Path | None = None,
) -> ReportOutcome:
    """Read the runs, write the report to ``out_dir`` (``report.html`` / ``report.md`` / ``report.marp.md``) and
    log it to the parent run (under ``mlflow run``, to the run MLflow started when there is no parent)."""
    from .. import tracking
    from ..runs import client as runs_client
    from .collect import collect
    from .findings import findings

    client = runs_client()
    data = collect(client, parent=parent, run_ids=run_ids, experiment=experiment)
    try:
        text = render(data, fmt)
        parent_id = data.parent.info.run_id if data.parent is not None else None
        folder = Path(out_dir) if out_dir else default_out_dir(parent_id)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"report{SUFFIX[fmt]}"
        path.write_text(text, encoding="utf-8")
        log_to = parent_id or os.environ.get("MLFLOW_RUN_ID")
        if log_to:
            tracking.log_report(client, log_to, path)
        stated = [f.text for f in findings(data.comparison.table, data.comparison.metrics)]
    finally:
        data.comparison.close()
    return ReportOutcome(path, log_to, data.failed, stated)

"""The report's sections, generated from the runs (``collect.ReportData``), in this order: the failed runs, the
findings, the comparison, the figures, the per-group results, the robustness scenario (what the runs show), then the
run set, the encoders from their model cards, the metrics with their definitions and direction (how they were made),
then the per-track tables."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from . import findings as findings_module
from . import groups, tracks
from .document import Bullets, Cell, Document, Image, Section, Table, Text, cell, png_of
from .tables import comparison_block, differences_block

FIGURE_CAPTIONS = {
    "per_target_top1_similarity": "Top-1 retrieval similarity per target, by encoder (each in its own space; hatched: "
    "top-1 not relevant)",
    "metrics_heatmap": "Encoders × metrics: colour = rank within the metric, raw values annotated (★ best, ≈ tied)",
    "per_target_summary": "Per-target values: mean with its bootstrap 95% CI (thick) and min–max (thin)",
    "deformation_heatmap": "Encoders × deformations: hit@1 (robustness scenario)",
}
COUNTS = {
    "n_refs": "reference files",
    "n_targets": "target files",
    "n_failed": "files failed",
    "n_queries_evaluated": "queries evaluated",
}
PARAMS = ("refs", "targets", "ground_truth", "scenario", "deformations", "k", "metrics", "code_version")


def _date(millis) -> str:
    if not millis:
        return "–"
    return dt.datetime.fromtimestamp(millis / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _same_or_each(values: dict[str, object]) -> str:
    """One value when every run has it, else ``value (encoder)`` for each."""
    texts = {label: "–" if v is None or v == "" else str(v) for label, v in values.items()}
    if len(set(texts.values())) == 1:
        return next(iter(texts.values()))
    return "; ".join(f"{text} ({label})" for label, text in texts.items())


def run_set(data) -> Section:
    from ..measures import plain_metrics

    runs, labels = data.runs, data.labels
    out = Section("Run set", id="run-set")
    where = f"experiment '{data.experiment_name}'"
    if data.parent is not None:
        where += f", suite parent '{data.parent.info.run_name}' ({data.parent.info.run_id})"
    out.blocks.append(Text(f"{len(runs)} finished encoder runs read back from MLflow: {where}."))
    rows = [
        ("runs", "; ".join(f"{label}: {run.info.run_id}" for run, label in zip(runs, labels))),
        ("date", _date(min((run.info.start_time or 0 for run in runs), default=0))),  # the first run's start
        (
            "dataset fingerprint",
            _same_or_each({label: run.data.params.get("dataset_fingerprint") for run, label in zip(runs, labels)}),
        ),
    ]
    logged = {label: plain_metrics(run.data.metrics) for run, label in zip(runs, labels)}
    for name in COUNTS:
        if any(name in values for values in logged.values()):
            counts = {label: _integer(values.get(name)) for label, values in logged.items()}
            rows.append((COUNTS[name], _same_or_each(counts)))
    for name in PARAMS:
        values = {label: run.data.params.get(name) for run, label in zip(runs, labels)}
        if any(v not in (None, "") for v in values.values()):
            rows.append((name.replace("_", " "), _same_or_each(values)))
    versions = sorted({key for run in runs for key in run.data.tags if key.startswith("version.")})
    packages = ", ".join(
        f"{key[len('version.') :]} {_same_or_each({lb: r.data.tags.get(key) for r, lb in zip(runs, labels)})}"
        for key in versions
    )
    if packages:
        rows.append(("package versions", packages))
    out.blocks.append(
        Table(["", "value"], [[Cell(k), Cell(v)] for k, v in rows], caption="What was run", id="run-set-table")
    )
    return out


def _integer(value) -> str | None:
    return None if value is None or pd.isna(value) else str(int(value))


def failures(data) -> Section | None:
    if not data.failed:
        return None
    items = [f"{encoder} (run {run_id}): {why}" for encoder, run_id, why in data.failed]
    return Section(
        "Failed runs",
        [Text(f"{len(items)} encoder run(s) did not finish and are left out of every table below:"), Bullets(items)],
        id="failed",
    )


def encoders(data) -> Section:
    from encoders.registry import card

    from ..runs import encoder_of

    rows = []
    for run, label in zip(data.runs, data.labels):
        params, tags = run.data.params, run.data.tags
        try:
            model = card(encoder_of(run))
            captures = model.captures or model.description
        except Exception:  # noqa: BLE001 - a plug-in not installed here: the run's params still say the rest
            captures = params.get("encoder_description", "–")
        rows.append(
            [
                Cell(label),
                Cell(captures),
                Cell(params.get("encoder_license", "–")),
                Cell(params.get("encoder_weights_id", "–")),
                Cell(tags.get("encoder.weights_sha256", "–")),
                Cell(f"{params.get('encoder_sample_rate', '–')} Hz / {params.get('encoder_dim', '–')}"),
                Cell(f"{params.get('encoder_package', '–')} {params.get('encoder_package_version', '')}".strip()),
            ]
        )
    columns = ["encoder", "what it captures", "licence", "weights", "weights sha256", "sample rate / dim", "package"]
    table = Table(columns, rows, caption="From the encoders' model cards", id="encoders")
    return Section("Encoders", [table], id="encoders-section")


def metric_definitions(data) -> Section:
    from ..measures import lower_is_better, measure

    rows = []
    for metric in data.comparison.metrics:
        found = measure(metric)
        direction = "lower" if lower_is_better(metric) else "higher"
        if found is None or found.higher_is_better is None:
            direction = "–"
        headline = "yes" if found is not None and found.headline else "no"
        rows.append([Cell(metric), Cell(direction), Cell(headline), Cell(found.description if found else "")])
    note = (
        "direction: which way is better. Every value is a mean over the targets (queries) with a bootstrap 95% CI; "
        "encoders are compared per target, paired (see the comparison). "
        "The per-track tables' columns are defined below them."
    )
    table = Table(["metric", "better", "headline", "definition"], rows, caption="Metrics", note=note, id="metrics")
    return Section("Metrics", [table], id="metrics-section")


def comparison(data) -> Section:
    comp = data.comparison
    out = Section("Comparison", id="comparison-section")
    out.blocks.append(comparison_block(comp.table, comp.metrics, "comparison", "Encoders × headline metrics"))
    diffs = differences_block(comp.table, comp.metrics, "differences")
    if diffs is not None:
        out.blocks.append(diffs)
    return out


def findings(data) -> Section:
    comp = data.comparison
    found = findings_module.findings(comp.table, comp.metrics)
    out = Section("Findings", id="findings")
    out.blocks.append(
        Text(
            "Stated only where the paired 95% CI of the per-target difference excludes 0 (hit rates: and McNemar's "
            "exact p < 0.05); otherwise: no significant difference."
        )
    )
    out.blocks += [Text(f"Warning: {warning}.") for warning in comp.warnings]  # e.g. runs on different datasets
    out.blocks.append(Bullets([f.text for f in found], css="findings"))
    summary = findings_module.agreement(found)
    if summary:
        out.blocks.append(Text(summary))
    return out


def figures(data) -> Section:
    images = [
        Image(png_of(figure), name, FIGURE_CAPTIONS.get(name, name))
        for name, figure in data.comparison.figures.items()
        if name != "deformation_heatmap"
    ]
    return Section("Figures", images, id="figures")


def robustness(data) -> Section | None:
    matrix = data.comparison.per_deformation
    if matrix is None:
        return None
    rows = [[Cell(str(d))] + [cell(v) for v in matrix[d]] for d in matrix.columns]
    table = Table(
        ["deformation", *[str(label) for label in matrix.index]],
        rows,
        caption="hit@1 per deformation × encoder",
        note="identity is the ceiling; read each row against it.",
        id="robustness",
        sortable=True,
    )
    out = Section("Robustness scenario", [table], id="robustness-section")
    figure = data.comparison.figures.get("deformation_heatmap")
    if figure is not None:
        out.blocks.append(Image(png_of(figure), "deformation_heatmap", FIGURE_CAPTIONS["deformation_heatmap"]))
    return out


def document(data) -> Document:
    sections = [  # what the runs show first, then how they were made, then every track
        failures(data),
        findings(data),
        comparison(data),
        figures(data),
        groups.section(data, data.comparison.metrics),
        robustness(data),
        run_set(data),
        encoders(data),
        metric_definitions(data),
        tracks.section(data),
    ]
    title = "musicbench report: " + " vs ".join(data.labels)
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    fingerprints = ", ".join(sorted({str(r.data.params.get("dataset_fingerprint", "–")) for r in data.runs}))
    subtitle = (
        f"{len(data.runs)} encoder runs on dataset {fingerprints}, read back from MLflow (experiment "
        f"'{data.experiment_name}'); generated {now}. Definitions of the metrics: see Metrics."
    )
    return Document(title, subtitle, [s for s in sections if s is not None])

"""`musicbench report`: one self-contained document of a suite, read back from MLflow.

- the demo (`musicbench demo`, the demo set built once per session) ends by writing the HTML report; every number of
  its comparison table is the runs' logged metric, it needs no network, it is logged to the parent run, and headless
  Chromium shows the table and the images (``test_mlflow_ui``'s browser helpers; skipped without Chromium);
- a finding is stated only when the paired CI excludes 0 (constructed runs, both cases);
- a targets folder with two subfolders gives per-group tables whose sizes add up to the whole;
- a suite with a failed child still reports, and names the failure (also through the CLI, as a Marp deck).
"""

from __future__ import annotations

import html as html_module
import json
import os
import re
import uuid
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from audio_factory import tone
from cli_helpers import dataset_args
from click.testing import CliRunner

from benchmark.cli import main
from benchmark.measures import logged_name

DOCS = Path(__file__).resolve().parent.parent / "docs"


class _Tables(HTMLParser):
    """Every table of an HTML page: id → (header cells, rows of (text, data-value))."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, tuple[list[str], list[list[tuple[str, str | None]]]]] = {}
        self._id = self._cell = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._id = attrs.get("id", f"table-{len(self.tables)}")
            self.tables[self._id] = ([], [])
        elif tag == "tr" and self._id:
            self.tables[self._id][1].append([])
        elif tag in ("td", "th") and self._id:
            self._cell, self._text = (tag, attrs.get("data-value")), ""

    def handle_data(self, data):
        if self._cell:
            self._text += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell and self._id:
            kind, value = self._cell
            header, rows = self.tables[self._id]
            if kind == "th":
                header.append(self._text.strip())
                rows.pop() if rows and not rows[-1] else None
            else:
                rows[-1].append((self._text.strip(), value))
            self._cell = None
        elif tag == "table":
            self._id = None


def tables_of(html: str) -> dict:
    parser = _Tables()
    parser.feed(html)
    return parser.tables


# --- the demo ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_report(demo_set, tmp_path_factory):
    """`musicbench demo` on the session's demo set, in a store of its own: (output, report path, store uri)."""
    import mlflow

    import benchmark.demo

    previous_uri = mlflow.get_tracking_uri()
    folder = tmp_path_factory.mktemp("demo-report")
    uri = "sqlite:///" + str(folder / "mlflow.db")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.setenv("MUSICBENCH_CACHE", str(folder / "cache"))
        patch.setattr(benchmark.demo, "build_demo", lambda **kw: demo_set)
        result = CliRunner().invoke(main, ["demo", "--no-progress"])
    mlflow.set_tracking_uri(previous_uri)  # the demo's client set its store process-wide
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Report: "), result.output[-2000:]
    return result.output, Path(last[len("Report: ") :]), uri


@pytest.mark.slow
def test_demo_report_numbers_are_the_logged_metrics(demo_report):
    from mlflow.tracking import MlflowClient

    _, path, uri = demo_report
    assert path.name == "report.html" and path.is_file()
    html = path.read_text(encoding="utf-8")
    client = MlflowClient(uri)
    (parent,) = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], "tags.`musicbench.suite` = 'true'"
    )
    children = {
        r.data.tags["musicbench.encoder"]: r
        for r in client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    }
    assert set(children) == {"mfcc", "chroma"}

    header, rows = tables_of(html)["comparison"]
    assert header[0] == "encoder" and {"map", "mrr", "hit_rate_at_1", "melody_acc_top1_mean"} <= set(header)
    assert [row[0][0] for row in rows] == ["mfcc", "chroma"]
    for row in rows:
        run = children[row[0][0]]
        for metric, (text, value) in zip(header[1:], row[1:]):
            logged = run.data.metrics[logged_name(metric)]
            assert float(value) == logged, (metric, value, logged)  # the exact number behind the cell
            shown = f"{logged:.3f}"
            low = run.data.metrics.get(logged_name(f"{metric}_ci_low"))
            if low is not None:
                shown += f" [{low:.3f}, {run.data.metrics[logged_name(f'{metric}_ci_high')]:.3f}]"
            assert text.startswith(shown), (metric, text, shown)

    # the per-track tables: the report's columns, one row per target, the top-1 of each run's top-k table
    for encoder, run in children.items():
        header, rows = tables_of(html)[f"tracks-{encoder}"]
        assert header == [
            "target track",
            "top retrieved",
            "cosine similarity",
            "CLAP",
            "melody acc.",
            "CE",
            "CU",
            "PC",
            "PQ",
            "relevant",
        ]
        assert len(rows) == int(run.data.metrics["count/n_targets"])
    # the sections, generated from the runs
    for section in ("Run set", "Encoders", "Metrics", "Comparison", "Findings", "Figures", "Per-track results"):
        assert f">{section}</h2>" in html, section
    assert "spectral envelope" in html and "pitch-class distribution" in html  # the model cards' "captures"
    assert run.data.params["dataset_fingerprint"] in html and run.data.params["code_version"] in html
    findings = re.search(r'<ul class="findings">(.*?)</ul>', html, re.S).group(1)
    assert all(" is best — " in item or "no significant difference" in item for item in findings.split("<li>")[1:])
    # self-contained: images inline, nothing fetched from anywhere
    assert html.count('src="data:image/png;base64,') >= 3
    assert not re.search(r'(src|href)="(?!data:|#)', html), "a reference outside the file"
    assert "<link" not in html and "<script src" not in html
    # logged to the parent run
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "report")] == ["report/report.html"]


@pytest.mark.slow
def test_demo_report_opens_in_headless_chromium(demo_report, tmp_path):
    from PIL import Image
    from test_mlflow_ui import _browse, _chromium

    chromium = _chromium()
    _, path, _ = demo_report
    shots = DOCS if os.environ.get("MUSICBENCH_UPDATE_DOCS") == "1" else tmp_path
    screenshot = shots / "report_html.png"
    dom = _browse(chromium, path.as_uri(), screenshot, tmp_path / "profile", "1280,2400")
    assert 'id="comparison"' in dom and "★" in dom and "hit_rate_at_1" in dom
    assert dom.count("<img") >= 3
    # the images are drawn: the figures' coloured bars and heatmap cells (the text is black on white)
    with Image.open(screenshot) as image:
        pixels = np.asarray(image.convert("HSV"))
    coloured = (pixels[..., 1] > 100) & (pixels[..., 2] > 60)
    assert coloured.mean() > 0.01, f"only {coloured.mean():.3%} coloured pixels: the figures are not shown"

    # a per-track table sorts on a click of its header (the report's own inline script, on each cell's exact value)
    click = """<script>
    const th = document.querySelectorAll("#tracks-mfcc th")[4];
    const order = () => [...document.querySelectorAll("#tracks-mfcc tbody tr")].map(r => r.cells[4].dataset.value);
    th.click(); const up = order(); th.click();
    document.body.insertAdjacentHTML("beforeend", `<pre id="sorted">${JSON.stringify([up, order()])}</pre>`);
    </script></body>"""
    clicked = tmp_path / "clicked.html"
    clicked.write_text(path.read_text(encoding="utf-8").replace("</body>", click), encoding="utf-8")
    dom = _browse(chromium, clicked.as_uri(), tmp_path / "clicked.png", tmp_path / "profile", "800,600")
    found = re.findall(r'<pre id="sorted">(.*?)</pre>', dom)[-1]  # the first is the script's own text
    up, down = json.loads(html_module.unescape(found))
    values = [float(v) for v in up]
    assert values == sorted(values) and [float(v) for v in down] == sorted(values, reverse=True)


# --- findings on constructed runs ----------------------------------------------------------------------------------


def _constructed_suite(experiment: str, average_precision: dict[str, list[float]]) -> str:
    """A parent run and one child per encoder, logged directly: map (with its CI), per-target and top-k tables."""
    import mlflow
    import pandas as pd

    from metrics.ir import bootstrap_ci

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])  # the session's store, whatever a test set before
    mlflow.set_experiment(experiment)
    targets = [f"t{i:02d}.wav" for i in range(len(next(iter(average_precision.values()))))]
    with mlflow.start_run(run_name="constructed") as parent:
        mlflow.set_tag("musicbench.suite", "true")
        for encoder, values in average_precision.items():
            with mlflow.start_run(run_name=encoder, nested=True):
                low, high = bootstrap_ci(np.asarray(values))
                mlflow.log_metrics(
                    {
                        logged_name("map"): float(np.mean(values)),
                        logged_name("map_ci_low"): low,
                        logged_name("map_ci_high"): high,
                    }
                )
                mlflow.log_params({"k": 5, "dataset_fingerprint": "constructed", "encoder": encoder})
                mlflow.set_tag("musicbench.encoder", encoder)
                per_target = pd.DataFrame(
                    {"target": targets, "top1_reference": "r.wav", "sim_top1": 0.5, "average_precision": values}
                )
                mlflow.log_table(per_target, "tables/per_target.json")
                topk = pd.DataFrame({"target": targets, "rank": 1, "reference": "r.wav", "similarity": 0.5})
                mlflow.log_table(topk, "tables/topk.json")
    return parent.info.run_id


@pytest.mark.parametrize(
    ("values", "significant"),
    [
        # the first encoder is ahead on every target: the paired CI of the difference excludes 0
        ({"strong": [0.9, 0.8, 1.0, 0.7, 0.9, 1.0, 0.8, 0.9], "weak": [0.2, 0.1, 0.3, 0.2, 0.1, 0.4, 0.2, 0.3]}, True),
        # ahead on average, but each encoder wins half the targets: the paired CI includes 0
        ({"strong": [1, 0, 1, 0, 1, 0, 1, 1], "weak": [0, 1, 0, 1, 0, 1, 1, 0]}, False),
    ],
)
def test_finding_only_when_the_paired_ci_excludes_zero(values, significant, tmp_path, monkeypatch):
    from benchmark.report import make_report

    monkeypatch.chdir(tmp_path)
    parent = _constructed_suite(f"findings-{uuid.uuid4().hex[:8]}", values)
    outcome = make_report(parent=parent, fmt="md", out_dir=tmp_path / "out")
    text = outcome.path.read_text(encoding="utf-8")
    findings = text.split("## Findings", 1)[1].split("\n## ", 1)[0]
    bullets = [line for line in findings.splitlines() if line.startswith("- ")]
    (line,) = [line for line in bullets if line.startswith("- map")]
    interval = re.search(r"paired 95% CI ([+-]\d\.\d+), ([+-]\d\.\d+)", line)
    low, high = float(interval.group(1)), float(interval.group(2))
    if significant:
        assert low > 0 and "map (higher is better): strong is best — strong 0.875 vs weak 0.225" in line
        assert not [b for b in bullets if "no significant difference" in b]
        assert "where a difference is significant, strong is best (map)" in findings
    else:
        assert low <= 0 <= high and "no significant difference" in line and "the CI includes 0" in line
        assert not [b for b in bullets if " is best" in b]
        assert "No headline metric separates the encoders" in findings


# --- per-group tables ----------------------------------------------------------------------------------------------


@pytest.fixture
def grouped_dataset(tmp_path) -> dict[str, Path]:
    """4 reference tones; targets in two subfolders: western/ (2 files) and piano/ (1 file)."""
    sr = 22050
    refs, targets = tmp_path / "refs", tmp_path / "targets"
    for folder in (refs, targets / "western", targets / "piano"):
        folder.mkdir(parents=True)
    for name, freq in {"a4": 440.0, "c5": 523.25, "e5": 659.25, "g5": 783.99}.items():
        sf.write(refs / f"{name}.wav", tone(freq, 1.5, sr), sr)
    sf.write(targets / "western" / "a4_noisy.wav", tone(440.0, 1.2, sr, noise=0.05, seed=1), sr)
    sf.write(targets / "western" / "g5_noisy.wav", tone(783.99, 1.2, sr, noise=0.05, seed=3), sr)
    sf.write(targets / "piano" / "e5_noisy.wav", tone(659.25, 1.2, sr, noise=0.05, seed=2), sr)
    gt = tmp_path / "ground_truth.csv"
    gt.write_text(
        "target,reference\nwestern/a4_noisy.wav,a4.wav\nwestern/g5_noisy.wav,g5.wav\npiano/e5_noisy.wav,e5.wav\n"
    )
    return {"refs": refs, "targets": targets, "ground_truth": gt, "root": tmp_path}


def _suite(data: dict, encoders: str, *extra: str) -> tuple[int, str]:
    """Run a suite in a fresh experiment; (exit code, parent run id)."""
    from mlflow.tracking import MlflowClient

    experiment = f"report-{uuid.uuid4().hex[:8]}"
    args = ["suite", "--encoders", encoders, *extra, *dataset_args(data, data["root"] / "cache")]
    result = CliRunner().invoke(main, [*args, "--experiment", experiment])
    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    (parent,) = client.search_runs([found.experiment_id], "tags.`musicbench.suite` = 'true'")
    return result.exit_code, parent.info.run_id


@pytest.mark.slow
def test_two_target_subfolders_give_group_tables_that_add_up(grouped_dataset, tmp_path, monkeypatch):
    from benchmark.report import make_report
    from benchmark.report.groups import target_groups

    monkeypatch.chdir(tmp_path)
    status, parent = _suite(grouped_dataset, "mfcc,chroma")
    assert status == 0
    html = make_report(parent=parent, out_dir=tmp_path / "out").path.read_text(encoding="utf-8")
    tables = tables_of(html)
    header, rows = tables["group-sizes"]
    sizes = {row[0][0]: int(row[1][0]) for row in rows}
    assert sizes == {"western": 2, "piano": 1, "all": 3}
    assert sizes["western"] + sizes["piano"] == sizes["all"]
    for group, size in (("western", 2), ("piano", 1)):
        header, rows = tables[f"group-{group}"]
        assert header[:2] == ["encoder", "map"] and [row[0][0] for row in rows] == ["mfcc", "chroma"]
        assert f"Group: {group} ({size} targets)" in html
    assert "Groups from the top-level subfolder of the targets: 2 groups, 3 targets in all" in html

    # a `group` column in the ground truth takes precedence over the folders
    class Run:
        class data:  # noqa: N801 - the shape of an mlflow Run
            params = {"ground_truth": str(grouped_dataset["root"] / "gt_groups.csv")}

    (grouped_dataset["root"] / "gt_groups.csv").write_text(
        "target,reference,group\na4_noisy,a4.wav,pop\nwestern/g5_noisy.wav,g5.wav,pop\npiano/e5_noisy.wav,e5.wav,folk\n"
    )
    import pandas as pd

    per_target = pd.DataFrame({"target": ["western/a4_noisy.wav", "western/g5_noisy.wav", "piano/e5_noisy.wav"]})
    groups, source = target_groups([Run], per_target)
    assert groups == {"western/a4_noisy.wav": "pop", "western/g5_noisy.wav": "pop", "piano/e5_noisy.wav": "folk"}
    assert "group` column of the ground truth" in source


# --- a failed child ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_suite_with_a_failed_child_reports_and_names_it(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, parent = _suite(tiny_dataset, "mfcc,clap", "--weights", "clap=/nonexistent/clap.pt")
    assert status == 1  # clap fails for its missing weights, mfcc finishes
    out = tmp_path / "deck"
    args = ["--parent", parent, "--experiment", "none", "--runs", "none", "--format", "marp", "--out", str(out)]
    result = CliRunner().invoke(main, ["report", *args])  # as the MLproject entry point passes them
    assert result.exit_code == 0, result.output
    path = Path(result.output.strip().splitlines()[-1])
    assert path == out / "report.marp.md"
    deck = path.read_text(encoding="utf-8")
    assert deck.startswith("---\nmarp: true\n")
    failed = deck.split("## Failed runs", 1)[1].split("\n---\n", 1)[0]
    assert "- clap (run " in failed and "FAILED" in failed and "/nonexistent/clap.pt" in failed
    assert "| mfcc |" in deck.split("## Comparison", 1)[1]  # the finished child is still reported


# --- the robustness scenario ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_robustness_suite_reports_deformation_by_encoder(tiny_dataset, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from benchmark.report import make_report

    monkeypatch.chdir(tmp_path)
    data = {**tiny_dataset, "targets": None}
    experiment = f"report-robust-{uuid.uuid4().hex[:8]}"
    args = ["--refs", str(data["refs"]), "--scenario", "robustness", "--deformations", "identity,gain_-10db"]
    args += ["--query-seconds", "1.0", "--metrics", "none", "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    result = CliRunner().invoke(main, ["suite", "--encoders", "mfcc,chroma", *args, "--experiment", experiment])
    assert result.exit_code == 0, result.output
    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    (parent,) = client.search_runs([found.experiment_id], "tags.`musicbench.suite` = 'true'")
    html = make_report(parent=parent.info.run_id, out_dir=tmp_path / "out").path.read_text(encoding="utf-8")
    header, rows = tables_of(html)["robustness"]
    assert header == ["deformation", "mfcc", "chroma"]
    assert [row[0][0] for row in rows] == ["identity", "gain_-10db"]
    children = {
        r.data.tags["musicbench.encoder"]: r
        for r in client.search_runs([found.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    }
    for row in rows:
        for encoder, (_, value) in zip(header[1:], row[1:]):
            assert float(value) == children[encoder].data.metrics[f"robustness/hit_rate_at_1.{row[0][0]}"]
    assert ">Robustness scenario</h2>" in html and 'alt="deformation_heatmap"' in html
    assert ">Per-group results</h2>" not in html  # queries are grouped by deformation, not by folder

"""Hardening, round two (issue 13): bad option values are refused at the edge, once, before any work (items 2, 8, 11,
13, 14), a finished run is never lost at the end (item 7), and no user error prints a traceback.

Each test first shows the old failure where it can be shown without the old code (e.g. the zero-padded window the
policy itself still cuts, matplotlib refusing an unescaped label), then asserts the new behaviour. Runs use the
weight-free ``mfcc`` encoder on ~1 s tones, in-process (``CliRunner``), in the isolated store of conftest.py.
"""

from __future__ import annotations

import math
import os
import random
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from reliability_helpers import REPO, SR, cli_command, runs, subprocess_env, tone

from benchmark.config import MAX_WINDOW_SECONDS, MIN_HOP_SECONDS, MIN_WINDOW_SECONDS, OptionError, RunConfig

# --- helpers ----------------------------------------------------------------------------------------------------


def cli(*args: str, catch: bool = True):
    """``musicbench <args>`` in-process; exceptions are kept on the result (``catch``) so that a crash shows as
    one, not as a test error."""
    from click.testing import CliRunner

    from benchmark.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=catch)


def lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


def assert_refused(result, experiment: str, *needles: str) -> str:
    """Exit status 2, one line of output (``Error: …``) naming what to fix, no traceback, no MLflow run."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, result.output
    out = lines(result.output)
    assert len(out) == 1 and out[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in out[0], out[0]
    assert runs(experiment) == [], "refused, yet an MLflow run was started"
    return out[0]


@pytest.fixture
def songs(tmp_path) -> dict[str, Path]:
    """3 references and 2 targets of ~1 s tones; each target's relevant reference is the same note."""
    refs, targets = tmp_path / "refs", tmp_path / "targets"
    refs.mkdir()
    targets.mkdir()
    for i, (name, freq) in enumerate((("a4", 440.0), ("c5", 523.25), ("e5", 659.25))):
        sf.write(refs / f"{name}.wav", tone(freq, 1.0, SR, noise=0.01, seed=i), SR)
    sf.write(targets / "a4_noisy.wav", tone(440.0, 0.9, SR, noise=0.05, seed=7), SR)
    sf.write(targets / "e5_noisy.wav", tone(659.25, 0.9, SR, noise=0.05, seed=8), SR)
    gt = tmp_path / "gt.csv"
    gt.write_text("target,reference\na4_noisy.wav,a4.wav\ne5_noisy.wav,e5.wav\n")
    return {"refs": refs, "targets": targets, "ground_truth": gt, "root": tmp_path}


def data_args(songs, experiment: str, *, ground_truth: bool = True, metrics: str = "none") -> list[str]:
    args = ["--refs", str(songs["refs"]), "--targets", str(songs["targets"])]
    if ground_truth:
        args += ["--ground-truth", str(songs["ground_truth"])]
    return [
        *args,
        "--metrics",
        metrics,
        "--cache-dir",
        str(songs["root"] / "cache"),
        "--experiment",
        experiment,
        "--workers",
        "1",
        "--no-progress",
    ]


def finished_run(experiment: str):
    (run,) = runs(experiment)
    assert run.info.status == "FINISHED", run.data.tags.get("failure_reason")
    return run


# --- item 2: --hop larger than --window ----------------------------------------------------------------------


def test_item2_hop_larger_than_window_is_refused_and_windows_hold_audio(songs):
    from encoders.base import WindowPolicy

    # the old failure: a window policy with hop > window cut a window that starts past the end of the audio —
    # pure zero padding, averaged into the file's embedding. Since issue 14 the policy drops a last window holding
    # less than its min_tail of real audio (none here) when the file has other windows
    audio = np.ones(SR, dtype=np.float32)  # 1 s
    windows = WindowPolicy(window_seconds=0.5, hop_seconds=5.0).segment(audio, SR)
    assert len(windows) == 1 and np.all(windows[0])

    # the new behaviour: such a run is refused at the edge (run, suite, and the config itself)
    result = cli("run", "--encoder", "mfcc", *data_args(songs, "h2"), "--window", "0.5", "--hop", "5")
    assert_refused(result, "h2", "--hop 5 is larger than --window 0.5")
    result = cli("suite", "--encoders", "mfcc,chroma", *data_args(songs, "h2s"), "--window", "0.5", "--hop", "5")
    assert_refused(result, "h2s", "--hop 5")
    with pytest.raises(OptionError, match="larger than --window"):
        RunConfig(encoder="mfcc", refs=songs["refs"], targets=songs["targets"], window_seconds=0.5, hop_seconds=5)

    # every accepted (window, hop) cuts windows that each start inside the file and hold real audio
    rng = random.Random(2)
    for _ in range(300):
        window = rng.uniform(MIN_WINDOW_SECONDS, 3.0)
        hop = rng.uniform(MIN_HOP_SECONDS, window)
        RunConfig(encoder="mfcc", refs=songs["refs"], targets=songs["targets"], window_seconds=window, hop_seconds=hop)
        length = rng.randint(1, 5 * SR)
        for piece in WindowPolicy(window, hop, pad_last=True).segment(np.ones(length, dtype=np.float32), SR):
            assert piece.any(), (window, hop, length)


# --- item 7: "$" in file names; nothing after the work fails the run -----------------------------------------


def test_item7_dollar_labels_are_escaped_for_math_text(tmp_path, monkeypatch):
    from benchmark import figures

    keys = ["$$.wav", "a$^$b.wav", "c.wav"]
    args = (
        np.eye(3, dtype=np.float32),
        keys,
        keys,
        {"target": keys, "rank": [1, 1, 1], "reference": keys},
        {"target": keys, "sim_top1": [1.0, 1.0, 1.0]},
        "mfcc",
        None,
    )
    with monkeypatch.context() as unescaped:  # the old failure: matplotlib's math-text parser rejects the label
        unescaped.setattr(figures, "plain_text", str)
        with pytest.raises(ValueError):
            figures.save_run_figure(figures.HEATMAP, str(tmp_path / "old"), *args)
        assert not (tmp_path / "old" / figures.HEATMAP).exists(), "a partial figure was left behind"
    assert figures.save_run_figures(str(tmp_path / "new"), *args) == [figures.HEATMAP, figures.TOP1_BARS]
    assert figures.shortened("$$.wav") == r"\$\$.wav" and figures.shortened("x" * 40 + "$").endswith(r"\$")


def test_item7_dollar_file_names_run_finishes_with_its_figures(tmp_path):
    refs, targets = tmp_path / "refs", tmp_path / "targets"
    refs.mkdir()
    targets.mkdir()
    for i, name in enumerate(("$$.wav", "a$^$b.wav", "plain.wav")):
        sf.write(refs / name, tone(300.0 + 90 * i, 1.0, SR, noise=0.01, seed=i), SR)
    sf.write(targets / "t$1$.wav", tone(300.0, 0.9, SR, noise=0.05, seed=5), SR)
    songs = {"refs": refs, "targets": targets, "root": tmp_path}
    result = cli("run", "--encoder", "mfcc", *data_args(songs, "h7", ground_truth=False))
    assert result.exit_code == 0, result.output
    run = finished_run("h7")
    from mlflow.tracking import MlflowClient

    figures = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "figures")}
    assert figures == {"figures/similarity_heatmap.png", "figures/top1_similarity.png"}
    assert not [tag for tag in run.data.tags if tag.startswith("skipped_artifact.")]


def test_item7_an_artifact_that_cannot_be_made_is_skipped_and_the_metrics_stand(songs, monkeypatch):
    import contextlib

    from benchmark import figures, parallel, tracking_result

    def broken_heatmap(*args, **kwargs):
        raise RuntimeError("cannot draw\nthis heatmap")

    def broken_failures(failures):
        raise OSError(28, "No space left on device")

    @contextlib.contextmanager
    def no_helper(fn, *args):  # draw here, where the patched function is seen
        yield None

    monkeypatch.setattr(figures, "similarity_heatmap", broken_heatmap)
    monkeypatch.setattr(parallel, "background_call", no_helper)
    monkeypatch.setattr(tracking_result, "failures_csv", broken_failures)
    result = cli("run", "--encoder", "mfcc", *data_args(songs, "h7b"))
    assert result.exit_code == 0, result.output
    run = finished_run("h7b")
    tags = run.data.tags
    assert tags["skipped_artifact.figures/similarity_heatmap.png"] == "RuntimeError: cannot draw this heatmap"
    assert "No space left on device" in tags["skipped_artifact.failures.csv"]
    assert {"retrieval/map", "retrieval/mrr", "similarity/sim_top1_mean", "count/n_refs"} <= set(run.data.metrics)
    from mlflow.tracking import MlflowClient

    paths = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "figures")}
    assert paths == {"figures/top1_similarity.png"}  # the other figure is still drawn
    names = {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}
    assert "failures.csv" not in names and "config.json" in names


# --- item 8: --metrics melody,melody -------------------------------------------------------------------------


def test_item8_repeated_metric_runs_once_with_a_note_in_run_and_suite(songs):
    result = cli("run", "--encoder", "mfcc", *data_args(songs, "h8", metrics="melody,melody"))
    assert result.exit_code == 0, result.output  # was: FAILED after all the work (duplicate columns)
    assert "Note: --metrics names melody more than once; each metric runs once" in result.output
    run = finished_run("h8")
    assert run.data.params["metrics"] == "melody" and "pair/melody_acc_top1_mean" in run.data.metrics

    result = cli("suite", "--encoders", "mfcc", *data_args(songs, "h8s", metrics="melody, melody"))
    assert result.exit_code == 0, result.output  # was: every child FAILED
    assert all(r.info.status == "FINISHED" for r in runs("h8s"))


@pytest.mark.parametrize(
    ("metrics", "needle"),
    [("melody,bogus", "unknown metric 'bogus'"), ("auto,melody", "'auto' cannot be combined"), ("all,none", "'all'")],
)
def test_item8_unknown_or_mixed_metrics_are_refused_before_any_work(songs, metrics, needle):
    experiment = f"h8-{metrics}"
    assert_refused(cli("run", "--encoder", "mfcc", *data_args(songs, experiment, metrics=metrics)), experiment, needle)


# --- item 11: window / hop values -----------------------------------------------------------------------------

BAD_WINDOWS = [
    (["--window", "nan"], "--window nan"),
    (["--window", "inf"], "--window inf"),
    (["--window", "-inf"], "--window -inf"),
    (["--window", "1e308"], "--window 1e+308"),
    (["--window", "1e-9"], "--window 1e-09"),
    (["--window", "0"], "--window 0"),
    (["--window", "-1"], "--window -1"),
    (["--window", str(MAX_WINDOW_SECONDS * 2)], "--window 7200"),
    (["--window", "1", "--hop", "nan"], "--hop nan"),
    (["--window", "1", "--hop", "inf"], "--hop inf"),
    (["--window", "1", "--hop", "1e-9"], "--hop 1e-09"),
    (["--window", "1", "--hop", "0"], "--hop 0"),
    (["--hop", "1"], "--hop needs --window"),
    (["--window", "abc"], "'abc' is not a number"),
]


@pytest.mark.parametrize(("args", "needle"), BAD_WINDOWS, ids=[" ".join(a) for a, _ in BAD_WINDOWS])
@pytest.mark.parametrize("command", ["run", "suite"])
def test_item11_bad_window_or_hop_is_one_line_exit_2_before_any_run(songs, args, needle, command):
    experiment = f"h11-{command}-{'_'.join(args)}"
    encoder = ["--encoder", "mfcc"] if command == "run" else ["--encoders", "mfcc,chroma"]
    assert_refused(cli(command, *encoder, *data_args(songs, experiment), *args), experiment, needle)


def test_item11_window_options_are_checked_by_the_config_itself(songs):
    base = {"encoder": "mfcc", "refs": songs["refs"], "targets": songs["targets"]}
    for window, hop in ((math.nan, None), (math.inf, None), (1e-9, None), (1.0, math.nan), (None, 1.0), (1.0, 2.0)):
        with pytest.raises(OptionError):
            RunConfig(**base, window_seconds=window, hop_seconds=hop)
    assert RunConfig(**base, window_seconds=MAX_WINDOW_SECONDS, hop_seconds=MIN_HOP_SECONDS).hop_seconds == 0.1


@pytest.mark.parametrize("entry", ["main", "suite"])
def test_item11_mlflow_run_hop_without_window_is_one_line_exit_2(songs, entry):
    """``mlflow run . -P hop=2``: the command MLflow builds from MLproject (its own code computes it) is refused
    with one line (the old failure: a raw ValueError traceback)."""
    from mlflow.projects import _project_spec

    project = _project_spec.load_project(str(REPO))
    params = {"hop": "2", "refs": str(songs["refs"]), "targets": str(songs["targets"]), "metrics": "none"}
    command = project.get_entry_point(entry).compute_command(params, str(songs["root"]))
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "benchmark.cli"] and "--hop" in argv and "--window" in argv
    experiment = f"h11-mlflow-{entry}"
    assert_refused(cli(*argv[3:], "--experiment", experiment), experiment, "--hop needs --window")


# --- item 13: --weights on an encoder that takes none ----------------------------------------------------------


@pytest.fixture
def junk_weights(tmp_path) -> dict[str, str]:
    fifo = tmp_path / "fifo.pt"
    os.mkfifo(fifo)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint" * 10)
    return {"nonexistent": "/nonexistent/w.pt", "dev_zero": "/dev/zero", "fifo": str(fifo), "junk": str(junk)}


@pytest.mark.parametrize("encoder", ["mfcc", "chroma", "crepe"])
def test_item13_weights_given_to_an_encoder_that_takes_none_is_refused(songs, junk_weights, encoder):
    why = "is weight-free" if encoder != "crepe" else "always uses its package's own weights"
    for kind, path in junk_weights.items():  # was: silently ignored, even a FIFO or a missing file
        experiment = f"h13-{encoder}-{kind}"
        result = cli("run", "--encoder", encoder, *data_args(songs, experiment), "--weights", path)
        assert_refused(result, experiment, f"'{encoder}' {why}", "--weights")
    result = cli("suite", "--encoders", f"mfcc,{encoder}", *data_args(songs, "h13s"), "--weights", f"{encoder}=/x.pt")
    assert_refused(result, "h13s", f"'{encoder}'")


# --- item 14: --device cuda without CUDA -------------------------------------------------------------------------


@pytest.mark.parametrize("encoder", ["mfcc", "crepe"])
def test_item14_device_cuda_without_cuda_is_refused_naming_the_fix(songs, encoder, monkeypatch):
    from benchmark import pipeline
    from benchmark.cli import checks

    monkeypatch.setattr(checks, "cuda_available", lambda: False)  # as on this CPU-only machine, on any machine

    def no_loading(*args, **kwargs):
        raise AssertionError("the dataset was read before the device was checked")

    monkeypatch.setattr(pipeline, "load", no_loading)
    experiment = f"h14-{encoder}"
    result = cli("run", "--encoder", encoder, *data_args(songs, experiment), "--device", "cuda")
    assert_refused(result, experiment, "CUDA is not available", "--device cpu")
    result = cli("suite", "--encoders", f"mfcc,{encoder}", *data_args(songs, experiment + "s"), "--device", "cuda")
    assert_refused(result, experiment + "s", "CUDA is not available")


def test_item14_weight_free_encoder_with_cuda_present_is_refused_too(monkeypatch):
    from benchmark.cli import checks

    monkeypatch.setattr(checks, "cuda_available", lambda: True)
    with pytest.raises(OptionError, match="mfcc, chroma are weight-free and computed on the CPU only"):
        checks.check_device(["mfcc", "crepe", "chroma"], "cuda")
    checks.check_device(["crepe", "clap"], "cuda")  # neural encoders may use it
    checks.check_device(["mfcc"], "auto")
    checks.check_device(["mfcc"], "cpu")


def test_cuda_check_matches_torch_here():
    import torch

    from benchmark.cli import checks

    assert checks.cuda_available() == torch.cuda.is_available()


# --- property: refused with exit 2 and one line, or finished with finite metrics ------------------------------


def _random_option(rng: random.Random) -> list[str]:
    """One option with a random value, valid about half of the time."""
    choice = rng.randrange(6)
    if choice == 0:
        window = rng.choice(["nan", "inf", "1e308", "1e-9", "0", "-2", "0.05", "x", "0.3", "0.6", "1", "1", "2"])
        args = ["--window", window]
        if rng.random() < 0.6:
            args += ["--hop", rng.choice(["nan", "0", "0.01", "inf", "0.1", "0.25", "0.5", "0.5", "2"])]
        return args
    if choice == 1:
        return ["--hop", rng.choice(["0.2", "1", "nan"])]
    if choice == 2:
        return ["--k", rng.choice(["0", "-1", "x", "1", "2", "3", "50"])]
    if choice == 3:
        parts = rng.choices(["melody", "melody", "melody_voiced", "auto", "none", "bogus", ""], k=rng.randint(1, 3))
        return ["--metrics", ",".join(parts)]
    if choice == 4:
        return ["--device", rng.choice(["auto", "cpu", "cpu", "cuda", "tpu"])]
    return ["--batch-size", rng.choice(["0", "1", "3", "8"])]


def _random_ground_truth(rng: random.Random, path: Path) -> None:
    """Rows of known names with valid relevance values; in about half of the files, one bad row (unknown name,
    short row, negative / non-finite / non-numeric relevance) or a self-pair-like row."""
    targets, refs = ["a4_noisy.wav", "e5_noisy.wav"], ["a4.wav", "c5.wav", "e5.wav", "a4", "e5"]
    rows = ["target,reference,relevance"]
    for _ in range(rng.randint(1, 4)):
        rows.append(",".join([rng.choice(targets), rng.choice(refs), rng.choice(["", "1", "2", "0", "0.5", "3"])]))
    if rng.random() < 0.5:
        bad = rng.choice(
            [
                "nope.wav,a4.wav,1",
                "a4_noisy.wav,missing.wav,1",
                "a4_noisy.wav",
                "a4_noisy.wav,a4.wav,-1",
                "a4_noisy.wav,a4.wav,nan",
                "a4_noisy.wav,a4.wav,inf",
                "a4_noisy.wav,a4.wav,1e400",
                "a4_noisy.wav,a4.wav,abc",
                "a4_noisy.wav,a4_noisy.wav,1",
            ]
        )
        rows.insert(rng.randint(1, len(rows)), bad)
    path.write_text("\n".join(rows) + "\n")


@pytest.mark.slow
def test_property_random_options_and_ground_truth_refuse_or_finish_finite(songs):
    """A seeded loop (hypothesis is not installed): random option values and random ground-truth rows either
    make the CLI refuse before any MLflow run (exit 2, one line), or the run finishes with finite metrics."""
    rng = random.Random(13)
    finished = refused = 0
    for i in range(14):
        experiment = f"prop-{i}"
        options = [arg for _ in range(rng.randint(1, 2)) for arg in _random_option(rng)]
        gt = songs["root"] / f"gt{i}.csv"
        _random_ground_truth(rng, gt)
        base = data_args(songs, experiment, ground_truth=False, metrics="none")
        result = cli("run", "--encoder", "mfcc", *base, "--ground-truth", str(gt), *options)
        context = f"{options} {gt.read_text()!r}: {result.output}"
        assert result.exception is None or isinstance(result.exception, SystemExit), context
        assert "Traceback" not in result.output, context
        if result.exit_code == 2:
            assert len(lines(result.output)) == 1 and result.output.startswith("Error: "), context
            assert runs(experiment) == [], context
            refused += 1
        else:
            assert result.exit_code == 0, context
            run = finished_run(experiment)
            assert run.data.metrics and all(math.isfinite(v) for v in run.data.metrics.values()), context
            finished += 1
    assert finished and refused, (finished, refused)  # the loop exercised both outcomes


# --- no traceback for any user error -------------------------------------------------------------------------


def _bad_inputs(songs, tmp: Path) -> dict[str, list[str]]:
    """Every bad input of the issue that the command line refuses, as ``run`` arguments (after the encoder)."""
    (tmp / "short.csv").write_text("target,reference\na4_noisy.wav\n")
    (tmp / "binary.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe\x00" * 20)
    (tmp / "negative.csv").write_text("target,reference,relevance\na4_noisy.wav,a4.wav,-1\n")
    (tmp / "nan.csv").write_text("target,reference,relevance\na4_noisy.wav,a4.wav,nan\n")
    (tmp / "inf.csv").write_text("target,reference,relevance\na4_noisy.wav,a4.wav,1e400\n")
    (tmp / "unknown.csv").write_text("target,reference\nnot_there.wav,a4.wav\n")
    cases = {" ".join(args): ["--encoder", "mfcc", *args] for args, _ in BAD_WINDOWS}
    cases["--window 0.5 --hop 5"] = ["--encoder", "mfcc", "--window", "0.5", "--hop", "5"]
    cases["--weights mfcc"] = ["--encoder", "mfcc", "--weights", "/nonexistent"]
    cases["--weights crepe"] = ["--encoder", "crepe", "--weights", "/dev/zero"]
    cases["--device cuda"] = ["--encoder", "mfcc", "--device", "cuda"]
    cases["--metrics bogus"] = ["--encoder", "mfcc", "--metrics", "melody,bogus"]
    cases["--experiment ''"] = ["--encoder", "mfcc", "--experiment", " "]
    cases["--k 0"] = ["--encoder", "mfcc", "--k", "0"]
    cases["--refs missing"] = ["--encoder", "mfcc", "--refs", str(tmp / "nowhere")]
    cases["--targets only"] = ["--encoder", "mfcc", "--refs", ""]
    for name in ("short", "binary", "negative", "nan", "inf", "unknown"):
        cases[f"ground truth {name}"] = ["--encoder", "mfcc", "--ground-truth", str(tmp / f"{name}.csv")]
    return cases


def _run_args(songs, experiment: str, case: list[str]) -> list[str]:
    """``run`` + the dataset arguments, with the case's own options taking precedence (click: last one wins)."""
    return ["run", *data_args(songs, experiment, ground_truth=False), *case]


def test_no_user_error_prints_a_traceback_in_process(songs, tmp_path):
    for name, case in _bad_inputs(songs, tmp_path).items():
        experiment = "tb-" + str(abs(hash(name)))
        result = cli(*_run_args(songs, experiment, case))
        assert result.exception is None or isinstance(result.exception, SystemExit), (name, result.exception)
        assert "Traceback" not in result.output, (name, result.output)
        assert result.exit_code == 2, (name, result.output)
        assert len(lines(result.output)) == 1 and result.output.startswith("Error: "), (name, result.output)
        assert runs(experiment) == [], name


@pytest.mark.slow
def test_no_user_error_prints_a_traceback_in_a_real_process(songs, tmp_path):
    """The same, as users see it: ``python -m benchmark.cli`` in its own process (warnings, logging and the
    interpreter's own error printing included), for a sample of the bad inputs; plus an unreachable store."""
    cases = _bad_inputs(songs, tmp_path)
    sample = ["--window nan", "--hop 1", "--window 0.5 --hop 5", "--weights crepe", "--device cuda"]
    sample += ["ground truth binary", "ground truth inf"]
    env = subprocess_env()
    for name in sample:
        done = subprocess.run(
            cli_command(*_run_args(songs, "tb-process", cases[name])),
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert done.returncode == 2, (name, done.stderr)
        assert "Traceback" not in done.stdout + done.stderr, (name, done.stderr)
        assert len(lines(done.stderr)) == 1 and not done.stdout.strip(), (name, done.stderr)
    store = subprocess.run(
        cli_command(*_run_args(songs, "tb-store", ["--encoder", "mfcc"])),
        capture_output=True,
        text=True,
        env={**env, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9", "MUSICBENCH_STORE_TIMEOUT": "2"},
        timeout=120,
    )
    assert store.returncode == 2 and "Traceback" not in store.stderr, store.stderr
    assert runs("tb-process") == []


# --- item 1 (and 6), recorded: the self-pairs and fallback matches of the ground truth on the run ----------------


def test_item1_self_pairs_and_fallbacks_are_logged_on_the_run(tmp_path):
    """The reader's own tests are in tests/test_ground_truth.py; here, what a run records of them: the metric
    ``n_ground_truth_self_pairs`` and the tag ``ground_truth_notes`` (self-pairs dropped, fallback matches)."""
    music = tmp_path / "music"  # refs and targets are one folder: every file is excluded from its own results
    music.mkdir()
    for i, name in enumerate(("a", "b", "c")):
        sf.write(music / f"{name}.wav", tone(300.0 + 60 * i, 0.8, SR, noise=0.02, seed=i), SR)
    gt = tmp_path / "gt.csv"
    gt.write_text("target,reference\na.wav,a.wav\na.wav,other/b.wav\nb.wav,c.wav\n")
    songs = {"refs": music, "targets": music, "ground_truth": gt, "root": tmp_path}
    result = cli("run", "--encoder", "mfcc", *data_args(songs, "h1"))
    assert result.exit_code == 0, result.output
    run = finished_run("h1")
    assert run.data.metrics["count/n_ground_truth_self_pairs"] == 1
    notes = run.data.tags["ground_truth_notes"]
    assert "self-pair" in notes and "a.wav" in notes and "other/b.wav" in notes, notes

"""The click options the commands share (``run_options``: ``run`` and ``suite``; ``HF_OPTIONS``: also
``check-encoder``) and the callbacks that read their values (an ``mlflow run`` parameter's ``UNSET`` words mean "not
given")."""

from __future__ import annotations

from pathlib import Path

import click

from ..config import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EXPERIMENT,
    DEFAULT_K,
    DEFAULT_MISSING_QUERIES,
    DEFAULT_TIES,
    MISSING_QUERIES,
    TIES,
    default_cache_dir,
)
from ..store import experiment_name
from .common import unset


def optional_path(ctx, param, value):
    """A path, or None when not given (or given as one of the ``UNSET`` words of an ``mlflow run`` parameter)."""
    return None if unset(value) else Path(value).expanduser()


def optional_text(ctx, param, value):
    """A text option, '' when not given (or an ``UNSET`` word)."""
    return "" if unset(value) else value


def experiment_option(ctx, param, value):
    """``--experiment``: a non-empty MLflow experiment name, or None (not given: ``store.resolve_experiment``)."""
    if value is None or str(value).strip() == "none":
        return None
    try:
        return experiment_name(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def optional_float(ctx, param, value):
    """A number, or None for '' (an empty ``mlflow run`` parameter); its range is checked with the other options
    (``check_options``), so that every bad value gets the same one-line refusal."""
    if unset(value):
        return None
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a number") from None


def optional_layer(ctx, param, value):
    """``--hf-layer``: None when not given (or an ``UNSET`` word of an ``mlflow run`` parameter)."""
    return None if value is None or str(value).strip() in ("", "none", "default") else str(value).strip()


def optional_bool(name: str, help: str):
    """``--name`` alone (true), ``--name true|false``, or absent (false): a flag ``mlflow run`` parameters can set."""
    return click.option(name, type=click.BOOL, is_flag=False, flag_value=True, default=False, help=help)


def count_option(*names: str, default: int, help: str, minimum: int = 1):
    """A whole-number option of at least ``minimum``, its default shown."""
    return click.option(*names, type=click.IntRange(min=minimum), default=default, show_default=True, help=help)


def choice_option(*names: str, choices, default: str, help: str | None = None):
    """One of ``choices``, its default shown."""
    return click.option(*names, type=click.Choice(choices), default=default, show_default=True, help=help)


def run_selection_options(verb: str):
    """``--parent``, ``--experiment`` and ``--runs``: which finished runs a command reads (``runs.select_runs``), each
    help text led by ``verb`` ("Compare", "Report on")."""
    options = (
        click.option(
            "--parent", callback=optional_text, help=f"{verb} the finished children of this suite parent run."
        ),
        click.option(
            "--experiment",
            callback=experiment_option,
            help=f"{verb} the latest finished run of every encoder in this experiment [default, when no option is "
            "given: in every experiment of the tracking store, runs found by their musicbench.encoder tag].",
        ),
        click.option("--runs", callback=optional_text, help=f"{verb} exactly these runs: RUN_ID,RUN_ID,…"),
    )

    def declare(command):
        for option in reversed(options):  # click lists options in the order they are written above the function
            command = option(command)
        return command

    return declare


#: the one rule for the experiment a run goes to (``store.resolve_experiment``)
EXPERIMENT_HELP = (
    f"MLflow experiment [default: $MLFLOW_EXPERIMENT_NAME, else $MLFLOW_EXPERIMENT_ID, else the experiment of an "
    f"enclosing `mlflow run`, else '{DEFAULT_EXPERIMENT}']."
)


#: ``--hf-layer`` and ``--trust-remote-code``: options of ``hf:`` encoders (``encoders/hf.py``)
HF_OPTIONS = (
    click.option(
        "--hf-layer",
        default=None,
        callback=optional_layer,
        metavar="N|mean|last",
        help="hf: encoders: the hidden layer to pool over time: last (default: last_hidden_state), N "
        "(hidden_states[N]; 0 = the transformer's input) or mean (of all hidden states). A name's own suffix "
        "(hf:MODEL:layer-N) wins, so one suite can compare layers.",
    ),
    click.option(
        "--trust-remote-code",
        is_flag=True,
        help="hf: encoders: allow a model that ships its own Python code (e.g. MERT) to run it. Off by default: "
        "that code runs with your permissions.",
    ),
)


#: ``--engine`` and ``--index`` with their parameters (docs/SCALING.md); grouped into the config by ``scale_options``
SCALE_OPTIONS = (
    choice_option(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="Who decodes and embeds: local (threads / worker processes) or ray (a Ray Data pipeline; extra 'ray').",
    ),
    click.option(
        "--ray-address",
        default="",
        help="Ray cluster to use with --engine ray [default: $RAY_ADDRESS, else a local Ray for the run].",
    ),
    count_option("--ray-actors", default=2, help="Ray actors holding the encoder."),
    count_option("--ray-batch-size", default=4, help="Files per Ray batch."),
    click.option(
        "--ray-num-gpus", type=click.FloatRange(min=0), default=0.0, show_default=True, help="GPUs per Ray actor."
    ),
    choice_option(
        "--index",
        "index_kind",
        choices=["exact", "faiss"],
        default="exact",
        help="Retrieval: exact blocked top-k, or a FAISS index (extra 'faiss'; recall vs exact is logged). "
        "Ground-truth IR metrics are always exact.",
    ),
    choice_option(
        "--faiss-type",
        choices=["flat", "ivf", "hnsw"],
        default="ivf",
        help="FAISS index: flat (exact inner product), ivf (IVF-Flat) or hnsw.",
    ),
    count_option("--faiss-nlist", default=0, help="IVF lists (0: 4*sqrt(refs), at most refs/39).", minimum=0),
    count_option("--faiss-nprobe", default=32, help="IVF lists searched."),
    count_option("--faiss-hnsw-m", default=32, help="HNSW neighbours."),
    count_option("--faiss-ef-search", default=128, help="HNSW search depth."),
)


#: ``--window`` / ``--hop`` / ``--min-tail``: the windows an encoder embeds in, overriding its card's (``run``,
#: ``suite``, ``check-encoder``); checked by ``config.check_window``, built by ``config.window_policy``
WINDOW_OPTIONS = (
    click.option(
        "--window",
        "window_seconds",
        callback=optional_float,
        help="Embed in windows of this many seconds (mean-pooled) instead of the encoder's default.",
    ),
    click.option(
        "--hop",
        "hop_seconds",
        callback=optional_float,
        help="Hop between windows in seconds (default: the window).",
    ),
    click.option(
        "--min-tail",
        "min_tail_seconds",
        callback=optional_float,
        help="With --window: a last window holding less than this many seconds of audio is dropped when the file "
        "has other windows (every other window weighs by the audio it holds) [default: max(1 s, 10% of the "
        "window), at most half of it].",
    ),
)


def run_options(fn):
    """Options shared by ``run`` and ``suite``."""
    options = [
        click.option(
            "--refs",
            callback=optional_path,
            help="Folder of reference songs (recursive). Omit --refs and --targets to use the embedded demo set.",
        ),
        click.option("--targets", callback=optional_path, help="Folder of target (query) songs."),
        click.option(
            "--ground-truth",
            callback=optional_path,
            help="CSV with columns target,reference[,relevance] (enables MAP, MRR, recall, nDCG).",
        ),
        count_option("--k", "k", default=DEFAULT_K, help="How many references to retrieve per target."),
        click.option(
            "--metrics",
            default="auto",
            show_default=True,
            help="Pair metrics: auto (what can run; skipped ones are tagged), all, none, or name,name.",
        ),
        click.option(
            "--metric-weights",
            multiple=True,
            metavar="METRIC=PATH",
            help="Weights of a pair metric's model, e.g. aesthetics=/path/checkpoint.pt (repeatable).",
        ),
        optional_bool("--allow-download", "Let model packages download missing weights from the Hugging Face hub."),
        choice_option("--device", choices=["auto", "cpu", "cuda"], default="auto"),
        count_option("--batch-size", default=DEFAULT_BATCH_SIZE, help="Windows per encoder call."),
        choice_option(
            "--precision",
            choices=["fp32", "bf16"],
            default="fp32",
            help="Numeric precision of neural encoders: fp32 (exact) or bf16 (opt-in autocast: faster only on a GPU "
            "or a CPU with native bf16; embeddings move by ~1e-5 in cosine). Weight-free encoders refuse bf16.",
        ),
        choice_option(
            "--ties",
            choices=TIES,
            default=DEFAULT_TIES,
            help="How equal similarities are ordered for the IR metrics. average: the expected value over every "
            "order of the tied references (no file order decides); index: lower reference index first; "
            "optimistic: relevant first; pessimistic: relevant last.",
        ),
        choice_option(
            "--missing-queries",
            choices=MISSING_QUERIES,
            default=DEFAULT_MISSING_QUERIES,
            help="A ground-truth query whose target failed: miss = counted with AP = RR = hit = 0 (trec_eval -c); "
            "drop = left out of the IR means. n_queries_ground_truth / n_queries_evaluated are logged either way.",
        ),
        *WINDOW_OPTIONS,
        click.option("--cache-dir", callback=optional_path, help=f"Embedding cache [default: {default_cache_dir()}]"),
        click.option(
            "--experiment",
            default=None,
            callback=experiment_option,
            help=EXPERIMENT_HELP,
        ),
        count_option(
            "--workers",
            default=2,
            help="Parallel workers: decode threads, or whole-file worker processes (weight-free encoders; CLAP on the "
            "CPU, one model per worker, sharing the cores).",
        ),
        *SCALE_OPTIONS,
        *HF_OPTIONS,
        click.option(
            "--no-progress",
            is_flag=True,
            help="No progress at all [default: bars on a terminal; elsewhere (cron, mlflow run, CI) one line per stage "
            "and per ~10 %, with counts, rate and each stage's duration].",
        ),
        optional_bool(
            "--system-metrics",
            "Log MLflow system metrics (CPU, memory, disk, network; GPU with nvidia-ml-py) every 10 s while the run "
            "runs (also: MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=true).",
        ),
        *scenario_options(),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def scenario_options() -> list:
    """``--scenario robustness`` and its options (``benchmark/scenarios``)."""
    return [
        click.option(
            "--scenario",
            default="",
            callback=optional_text,
            help="robustness: derive queries from --refs (a seeded excerpt of each reference under each deformation; "
            "its source is the relevant reference) instead of --targets and --ground-truth.",
        ),
        click.option(
            "--deformations",
            default="",
            callback=optional_text,
            help="Deformations of the robustness scenario, comma-separated [default: identity, excerpt, pitch_up_1, "
            "pitch_down_1, pitch_up_2, pitch_down_2, tempo_0.9, tempo_1.1, noise_snr_20, noise_snr_10, gain_-10db, "
            "lowpass_4k, mp3_32k].",
        ),
        click.option(
            "--query-seconds",
            callback=optional_float,
            help="Length of a robustness query in seconds [default: 20].",
        ),
        click.option("--scenario-seed", type=int, default=0, show_default=True, help="Seeds query offsets and noise."),
    ]

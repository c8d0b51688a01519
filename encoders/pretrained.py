"""Base class of the encoders whose pretrained weights come from a model package and are resolved offline.

``PretrainedEncoder`` owns what every such encoder does the same way: finding the weights (``resolve_weights``,
offline first), recording their path and sha256, the ``--window`` override (``Encoder.card_for``), the device
(``pick_device``), the numeric precision (``--precision``: ``precisions`` says which ones an encoder offers, and
``computing()`` is the one context every forward pass runs in), loading (the ``_load`` hook), equal-length
batching with input and output checks, and ``close``. A subclass keeps only what is specific to its model: its
card, where its weights live, how its package builds and loads it (``_load``), one forward pass
(``_embed_equal_length``) and ``write_random_weights``.

``read_torch_checkpoint`` and ``load_state_strict`` are the shared, safe and strict way to read a ``torch.save``
checkpoint and load it into a module, naming what does not match.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .base import Encoder, EncoderError, EncoderUnavailable, UnusableWeights
from .runtime import prepare_torch_stack, set_offline_defaults
from .torch_utils import caller_rng_kept, equal_length_groups, known_cpu, pick_device
from .weights import ResolvedWeights, WeightsSpec, load_torch_checkpoint, resolve_weights

#: how many missing / unexpected checkpoint keys an error names
KEYS_SHOWN = 10

log = logging.getLogger(__name__)


class PretrainedEncoder(Encoder):
    """Subclasses set ``card``, ``weights_spec``, ``install`` (pip line), ``family`` (how errors name the model)
    and implement ``_load``; for ``embed``'s equal-length batching, ``min_samples`` and ``_embed_equal_length``.
    ``module`` (the import name) defaults to the card's package with ``-`` → ``_``."""

    weights_spec: WeightsSpec
    module: str | None = None
    install: str
    family: str
    min_samples: int = 1
    #: the ``--precision`` values this encoder computes in; ``fp32`` (the default, exact) always. Add ``bf16``
    #: only where its embeddings were checked against fp32 (cosine ≥ 0.9999, see tests/test_precision.py).
    precisions: tuple[str, ...] = ("fp32",)
    #: "thread": the model is loaded at construction and embeds in this process. "process": the harness may embed
    #: files in worker processes, each loading the model itself (forked from a fork server that imported the model
    #: package while the run set itself up); it is loaded here only if this process embeds (``load_model``).
    #: Always "thread" on an accelerator.
    parallel = "thread"
    #: modules a worker's fork server imports ahead (``parallel = "process"``), e.g. the model package
    worker_modules: tuple[str, ...] = ()
    _model: Any = None
    _device: Any = None

    def __init__(self, options=None):
        """Resolve the weights (offline unless allowed), pick the device, hash the weights and (``parallel`` "thread")
        load the model.

        Loading leaves the caller's torch and Python random streams as they were (constructors draw random
        initial parameters, and some reseed), so building an encoder never changes a seeded caller's numbers."""
        from .registry import EncoderOptions

        self.options = options = options or EncoderOptions()
        self.precision = self.check_precision(options)
        resolved = self._resolve(options)
        self.weights_source = str(resolved.path)
        self.card = self.card_for(options)
        self.batch_size = max(1, int(options.batch_size))
        # The weights' sha256 (a tag, and part of the cache identity) is computed on the other core while torch is
        # imported (to pick the device) and the model is built and loaded: hashlib and file reads release the GIL,
        # and importing and building are one thread of Python.
        with ThreadPoolExecutor(1, thread_name_prefix="weights-sha256") as hasher:
            digest = hasher.submit(resolved.sha256)
            if self.parallel == "process" and known_cpu(options.device):
                self._device = None  # the CPU: torch is imported where the model is loaded (``device``), not here
            else:
                self._device = pick_device(options.device)
            if self.device_type != "cpu":
                self.parallel = "thread"  # one model on the accelerator, fed from this process
            if self.precision == "bf16" and not native_bf16(self.device_type):
                log.warning(
                    "--precision bf16 on this CPU has no native bfloat16 arithmetic (AVX512-BF16/AMX): PyTorch "
                    "emulates it, and it runs several times slower than fp32 here (measured ~5x on AVX2). Use fp32 on "
                    "this machine."
                )
            if self.parallel == "thread":
                self.load_model()
            # else loaded where it is first used: in each worker process, or here (``load_model``)
            self.weights_sha256 = digest.result()

    @property
    def device(self):
        """The ``torch.device`` the model runs on (``pick_device``)."""
        if self._device is None:
            self._device = pick_device(self.options.device)
        return self._device

    @property
    def device_type(self) -> str:
        """``device.type`` ("cpu", "cuda"), without importing torch when it is the CPU."""
        return "cpu" if self._device is None else self._device.type

    @property
    def model(self) -> Any:
        """The loaded model (whatever ``_load`` returned), loaded now if it was not yet (``load_model``)."""
        self.load_model()
        return self._model

    def load_model(self) -> None:
        """Load the model unless it is loaded: the weights go through ``_load``. Raises ``UnusableWeights`` when they
        cannot be used (a run's error, never a file's: the harness calls this before it embeds any file)."""
        if self._model is None:
            prepare_torch_stack()  # before _load imports its model package
            with caller_rng_kept():
                self._model = self._load(Path(self.weights_source), self.device)

    def in_worker(self, workers: int) -> None:
        """In a worker process, one of ``workers`` busy at once: torch computes with this worker's share of the
        cores (all of them for a file embedded alone)."""
        import torch

        threads = max(1, available_cores() // max(1, workers))
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (for a worker process) without the model: the worker loads it from the weights."""
        return {**self.__dict__, "_model": None}

    def _load(self, path: Path, device) -> Any:
        """Build the model from the resolved weights at ``path`` on ``device`` (a ``torch.device``), in eval mode."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the model's memory (used again, the encoder loads it again)."""
        self._model = None

    @classmethod
    def import_name(cls) -> str:
        """The model package's import name (``module``, else the card's package with ``-`` → ``_``)."""
        return cls.module or cls.card.package.replace("-", "_")

    @classmethod
    def require_package(cls) -> None:
        if importlib.util.find_spec(cls.import_name()) is None:
            raise EncoderUnavailable(
                f"encoder '{cls.card.name}' needs the '{cls.card.package}' package: pip install {cls.install}"
            )

    @classmethod
    def _resolve(cls, options) -> ResolvedWeights:
        cls.require_package()
        set_offline_defaults()  # before resolve_weights may import huggingface_hub, which reads it once
        return resolve_weights(cls.weights_spec, options.weights, options.allow_download)

    @classmethod
    def check_available(cls, options) -> str:
        """Package installed and weights found offline? Loads no model and imports no torch."""
        resolved = cls._resolve(options)
        return f"weights: {resolved.path} ({resolved.source})"

    @classmethod
    def identity_for(cls, options) -> dict[str, Any]:
        """``identity()`` of the encoder ``options`` would build, without building it (hashes the weights)."""
        precision = cls.check_precision(options)
        return _with_precision(cls.make_identity(cls.card_for(options), cls._resolve(options).sha256()), precision)

    def identity(self) -> dict[str, Any]:
        """The base identity, plus the precision when it is not fp32: a bf16 embedding is never served to an fp32
        run (and fp32 identities, hence cached fp32 embeddings, are what they were before precision existed)."""
        return _with_precision(super().identity(), self.precision)

    @classmethod
    def check_precision(cls, options) -> str:
        """``options.precision`` when this encoder offers it, else ``EncoderUnavailable`` saying which it offers."""
        precision = getattr(options, "precision", "fp32") or "fp32"
        if precision not in cls.precisions:
            raise EncoderUnavailable(
                f"encoder '{cls.card.name}' does not offer --precision {precision} "
                f"(it offers: {', '.join(cls.precisions)})"
            )
        return precision

    def computing(self):
        """The context of every forward pass: inference mode (no autograd), and for ``--precision bf16``
        ``torch.autocast`` in bfloat16 on the model's device (CPU or CUDA). fp32 computes exactly as before."""
        import torch

        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        if self.precision == "bf16":
            stack.enter_context(torch.autocast(device_type=self.device.type, dtype=torch.bfloat16))
        return stack

    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray:
        """One embedding per item; equal-length items share forward passes (padding would change them)."""
        out = np.empty((len(batch), self.dim), dtype=np.float32)
        min_samples = max(self.min_samples, int(round(self.window.min_seconds * self.sample_rate)))
        for indices, audio in equal_length_groups(batch, min_samples, self.batch_size):
            with self.computing():
                out[indices] = self._embed_equal_length(audio)
        bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
        if bad.size:
            raise EncoderError(f"{self.name} produced non-finite embeddings for batch items {bad.tolist()}")
        return out

    def _embed_equal_length(self, audio: np.ndarray) -> np.ndarray:
        """Embed ``(n, samples)`` float32 audio in one forward pass → ``(n, dim)``."""
        raise NotImplementedError


def native_bf16(device) -> bool:
    """Whether ``device`` (a ``torch.device`` or its type) computes bfloat16 natively: CUDA, or a CPU with bf16
    instructions (AVX512-BF16, AMX: read from /proc/cpuinfo where there is one, else asked of oneDNN). Without them,
    autocast to bf16 on the CPU is correct but much slower than fp32."""
    if getattr(device, "type", device) != "cpu":
        return True
    flags = _cpu_flags()
    if flags is not None:
        return bool(flags & {"avx512_bf16", "amx_bf16"})
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # an older or newer torch without that probe: assume it is there
        return True


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _cpu_flags() -> set[str] | None:
    """The x86 CPU's feature flags (Linux's /proc/cpuinfo), None where they cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return None


def _with_precision(identity: dict[str, Any], precision: str) -> dict[str, Any]:
    return identity if precision == "fp32" else {**identity, "precision": precision}


def read_torch_checkpoint(path: Path, model: str, family: str, safe_globals: tuple = (), *, mmap: bool = False):
    """``weights.load_torch_checkpoint`` (weights-only unless the user vouched for the file; ``mmap`` maps it);
    any other failure to read it becomes an ``UnusableWeights`` naming the file (a user's error: one line, no
    traceback)."""
    try:
        return load_torch_checkpoint(path, model, safe_globals, mmap=mmap)
    except EncoderUnavailable:
        raise
    except Exception as error:  # noqa: BLE001 - any failure here means an unreadable checkpoint
        raise UnusableWeights(f"cannot read {family} checkpoint {path}: {error}") from error


def _key_list(keys: list[str]) -> str:
    shown = ", ".join(keys[:KEYS_SHOWN])
    return f"{shown}, … ({len(keys) - KEYS_SHOWN} more)" if len(keys) > KEYS_SHOWN else shown


def load_state_strict(module, state: Mapping, what: str, family: str, *, assign: bool = False) -> None:
    """``module.load_state_dict(state, strict=True)``; a mismatch is an ``EncoderError`` that names up to
    ``KEYS_SHOWN`` missing and unexpected keys (or the shape mismatch), so a wrong checkpoint is never half-loaded.
    It is an ``UnusableWeights``: the user's to fix, shown as one line.

    ``assign``: the module takes the checkpoint's tensors themselves instead of copies into its own (no second
    copy of the weights; from a memory-mapped checkpoint, weights that are never used are never read). Done only
    when every tensor already has the module's dtype and shape and the module is on the CPU, so the result is
    the same as copying."""
    current = module.state_dict()
    expected = set(current)
    missing, unexpected = sorted(expected - state.keys()), sorted(state.keys() - expected)
    if missing or unexpected:
        problems = [
            f"{label} keys ({len(keys)}): {_key_list(keys)}"
            for label, keys in (("missing", missing), ("unexpected", unexpected))
            if keys
        ]
        raise UnusableWeights(f"{what} does not match the {family} architecture: " + "; ".join(problems))
    assign = assign and all(
        getattr(state[key], "dtype", None) == value.dtype
        and getattr(state[key], "shape", None) == value.shape
        and value.device.type == "cpu"
        for key, value in current.items()
    )
    try:
        module.load_state_dict(state, strict=True, assign=assign)
    except RuntimeError as error:  # same keys, different shapes
        raise UnusableWeights(f"{what} does not match the {family} architecture: {error}") from error


def new_weights_dir(directory: str | Path) -> Path:
    """``directory`` as a ``Path``, created if needed: where ``write_random_weights`` saves."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return directory

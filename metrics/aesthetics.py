"""Audiobox Aesthetics (audiobox-aesthetics 0.0.4): CE, CU, PC, PQ of each song, as the official predictor outputs.

Scores come from the package's own ``audiobox_aesthetics.infer.AesPredictor.forward``: its 10 s windows (hop
10 s, the last one zero-padded and masked), its model, and its aggregation (the mean of the window scores
weighted by each window's unpadded length). The axes are Content Enjoyment, Content Usefulness, Production
Complexity and Production Quality, on the predictor's 1–10 scale (a random-init checkpoint gives other values).

What this module adds around the predictor, and why (measured on audiobox-aesthetics 0.0.4):

* **No silent hub fallback.** ``AesPredictor(checkpoint_pth=p)`` downloads ``facebook/audiobox-aesthetics``
  ``checkpoint.pt`` from the hub when ``p`` does not exist (``audiobox_aesthetics.utils.load_model``), and
  ``checkpoint_pth=None`` calls ``AesMultiOutput.from_pretrained`` (hub). The checkpoint is resolved here with
  ``encoders.weights.resolve_weights`` (explicit path → ``$MUSICBENCH_WEIGHTS/aesthetics/`` → Hugging Face cache;
  the network only with ``allow_download``), and while the predictor is built its ``load_model`` is replaced by
  one that refuses anything but that existing local file.
* **Weights-only loading.** The package calls ``torch.load(f, map_location=device)`` without ``weights_only``
  (so the outcome depends on torch's default). While the predictor is built, that call gets
  ``weights_only=True`` explicitly; the released ``checkpoint.pt`` is a plain dict of tensors, numbers and
  strings (the upstream ``export_model_to_hf.py`` itself reads it with ``weights_only=True``).
* **Tensors in, not paths.** The predictor's path input goes through ``torchaudio.load``, which does not work
  on this machine kind; the harness's decoded 16 kHz mono audio is passed as a tensor with its sample rate
  (``{"wav": tensor(1, T), "sample_rate": 16000}``), so the predictor's resample is the identity.
* **Bounded memory.** ``forward`` puts every window of a file into one model call (an hour of audio = 360
  windows at once). Long audio is therefore passed in chunks of ``batch_size`` windows cut at multiples of
  10 s — exactly the predictor's own window boundaries — and the chunk results are combined with weights equal
  to their lengths. Because the package weights each window by ``len / 10 s``, this equals the package's
  single-call result (up to float32 rounding, ~1e-6); audio up to ``batch_size`` × 10 s is one call.
* **Refusals.** Empty audio (the package crashes in ``torch.stack``), non-finite samples, and a non-finite
  score raise ``ValueError`` (a per-file failure in the harness). Very short but non-empty audio is scored as
  the predictor scores it (one zero-padded window whose padding is masked).
* **Device.** The predictor picks CUDA → MPS → CPU itself; ``device`` other than ``auto`` moves the model.
* ``AesMultiOutput``'s ``precision`` setting is inert in 0.0.4: ``__post_init__`` maps it to a ``torch.dtype``
  before testing ``str(precision) in {"16", "bf16"}``, so autocast is never enabled; inference is float32.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import pickle
import types
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from encoders.base import EncoderUnavailable
from encoders.runtime import package_version
from encoders.torch_utils import pick_device
from encoders.weights import ResolvedWeights, WeightsSpec, resolve_weights

from .base import Measure, MetricUnavailable, PairMetric
from .registry import MetricOptions

PACKAGE = "audiobox-aesthetics"
MODULE = "audiobox_aesthetics"
HF_REPO = "facebook/audiobox-aesthetics"  # audiobox_aesthetics.utils.DEFAULT_HF_REPO
CHECKPOINT_FILE = "checkpoint.pt"  # audiobox_aesthetics.utils.DEFAULT_CKPT_FNAME, what AesPredictor loads
SAMPLE_RATE = 16000  # AesPredictor.sample_rate
WINDOW_SECONDS = 10  # AesPredictor.forward: make_inference_batch(wavs, 10, 10, ...)
WINDOW_SAMPLES = WINDOW_SECONDS * SAMPLE_RATE
AXES = ("CE", "CU", "PC", "PQ")  # audiobox_aesthetics.infer.AXES_NAME
#: the model_cfg keys AesPredictor.setup_model reads from a checkpoint
MODEL_CFG_KEYS = (
    "proj_num_layer",
    "proj_ln",
    "proj_act_fn",
    "proj_dropout",
    "nth_layer",
    "use_weighted_layer_sum",
    "precision",
    "normalize_embed",
    "output_dim",
)


def _value_name(axis: str) -> str:
    return f"aes_{axis.lower()}"


class Aesthetics(PairMetric):
    """Audiobox Aesthetics of target and retrieved reference, and their difference (target − reference)."""

    name = "aesthetics"
    section = "aesthetics"
    sample_rate = SAMPLE_RATE
    feature_shape = (4,)  # [CE, CU, PC, PQ]
    file_value_names = tuple(_value_name(axis) for axis in AXES)
    columns = tuple(f"{_value_name(axis)}_{kind}" for axis in AXES for kind in ("target", "ref", "delta"))
    #: a score is better higher; a target − reference difference has no better direction
    measures = tuple(
        Measure(f"{_value_name(axis)}_delta", None, description=f"{axis} of target minus reference") for axis in AXES
    )
    weights_spec = WeightsSpec(model="aesthetics", hf_repo=HF_REPO, files=(CHECKPOINT_FILE,))
    implementation_version = 1

    def __init__(self, options: MetricOptions | None = None):
        # cheap: no model, no package import, no file access until first use
        self.options = options or MetricOptions()
        self._resolved: ResolvedWeights | None = None
        self._sha256: str | None = None
        self._predictor = None

    # ---- availability and identity -------------------------------------------------------------------------
    def _weights(self) -> ResolvedWeights:
        if self._resolved is None:
            try:
                self._resolved = resolve_weights(
                    self.weights_spec, self.options.weights.get(self.name), self.options.allow_download
                )
            except EncoderUnavailable as error:  # WeightsNotFound: names the file and where to put it
                raise MetricUnavailable(str(error)) from None
        return self._resolved

    def check_available(self) -> str:
        if importlib.util.find_spec(MODULE) is None:
            raise MetricUnavailable(f"metric '{self.name}' needs the {PACKAGE} package: pip install {PACKAGE}==0.0.4")
        resolved = self._weights()
        return f"weights: {resolved.path} ({resolved.source})"

    def weights_sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = self._weights().sha256()
        return self._sha256

    def identity(self) -> dict[str, Any]:
        return {
            "metric": self.name,
            "sample_rate": self.sample_rate,
            "version": self.implementation_version,
            "package": PACKAGE,
            "package_version": package_version(PACKAGE),
            "weights_sha256": self.weights_sha256(),
            "axes": list(AXES),
            "windowing": f"AesPredictor.forward, {WINDOW_SECONDS} s windows hop {WINDOW_SECONDS} s, "
            "length-weighted mean",
        }

    # ---- model -----------------------------------------------------------------------------------------------
    def _load(self):
        """The package's ``AesPredictor`` on the resolved checkpoint (once), loaded weights-only, never from the hub."""
        if self._predictor is not None:
            return self._predictor
        self.check_available()
        path = self._weights().path
        from encoders.runtime import prepare_torch_stack

        prepare_torch_stack()  # torchaudio's CUDA-linked extension; offline hub defaults
        from audiobox_aesthetics import infer

        try:
            device = pick_device(self.options.device or "auto")
        except EncoderUnavailable as error:
            raise MetricUnavailable(str(error)) from error
        try:
            with _local_weights_only(infer, path):
                predictor = infer.AesPredictor(checkpoint_pth=str(path), data_col="wav")
        except (pickle.UnpicklingError, KeyError, TypeError, RuntimeError, EOFError, OSError) as error:
            raise MetricUnavailable(
                f"cannot load the Audiobox Aesthetics checkpoint {path}: "
                f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            ) from error
        if self.options.device not in ("auto", None):
            predictor.device = device
            predictor.model.to(device)
        self._predictor = predictor
        return predictor

    def close(self) -> None:
        self._predictor = None

    # ---- scoring ---------------------------------------------------------------------------------------------
    def file_features(self, audio: np.ndarray) -> np.ndarray:
        """``[CE, CU, PC, PQ]`` (float64) of mono float32 audio at 16 kHz, from the package's predictor."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"Audiobox Aesthetics needs mono 1-D audio, got shape {audio.shape}")
        if audio.size == 0:
            raise ValueError("empty audio (0 samples): Audiobox Aesthetics cannot score it")
        if not np.isfinite(audio).all():
            raise ValueError("audio contains non-finite samples (NaN or inf): Audiobox Aesthetics cannot score it")
        predictor = self._load()
        import torch

        chunk = WINDOW_SAMPLES * max(1, int(self.options.batch_size))
        total, weight = np.zeros(len(AXES)), 0.0
        for start in range(0, audio.size, chunk):
            piece = np.ascontiguousarray(audio[start : start + chunk])
            row = predictor.forward([{"wav": torch.from_numpy(piece).unsqueeze(0), "sample_rate": SAMPLE_RATE}])[0]
            scores = np.array([row[axis] for axis in AXES], dtype=np.float64)
            if not np.isfinite(scores).all():
                raise ValueError(
                    f"Audiobox Aesthetics produced non-finite scores "
                    f"{dict(zip(AXES, scores.tolist()))} (checkpoint {self._weights().path})"
                )
            total += piece.size * scores
            weight += piece.size
        return total / weight

    def file_values(self, features: np.ndarray) -> dict[str, float]:
        return {_value_name(axis): float(value) for axis, value in zip(AXES, features)}

    def pair_scores(self, target: np.ndarray, reference: np.ndarray) -> dict[str, float]:
        out = {}
        for axis, t, r in zip(AXES, np.asarray(target, dtype=np.float64), np.asarray(reference, dtype=np.float64)):
            out[f"{_value_name(axis)}_target"] = float(t)
            out[f"{_value_name(axis)}_ref"] = float(r)
            out[f"{_value_name(axis)}_delta"] = float(t - r)
        return out

    # ---- random weights (tests, smoke runs) --------------------------------------------------------------------
    @classmethod
    def write_random_weights(cls, directory: str | Path, seed: int = 0) -> Path:
        """Write a seeded random-init ``AesMultiOutput`` as ``<directory>/checkpoint.pt``; returns its path.

        The layout is what ``AesPredictor.setup_model`` reads: ``{"state_dict": {"model.<key>": tensor},
        "model_cfg": {<its nine keys>}, "target_transform": {axis: {"mean", "std"}}}``, with the package's default
        model config and mean 0 / std 1 per axis (so scores are near 0, not on the 1–10 scale).
        """
        from encoders.runtime import prepare_torch_stack

        prepare_torch_stack()
        import torch
        from audiobox_aesthetics.model.aes import AesMultiOutput

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        defaults = {f.name: f.default for f in dataclasses.fields(AesMultiOutput)}
        model_cfg = {key: defaults[key] for key in MODEL_CFG_KEYS}
        target_transform = {axis: {"mean": 0.0, "std": 1.0} for axis in AXES}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AesMultiOutput(target_transform=target_transform, **model_cfg)
        state = {f"model.{key}": value for key, value in model.state_dict().items()}
        path = directory / CHECKPOINT_FILE
        torch.save({"state_dict": state, "model_cfg": model_cfg, "target_transform": target_transform}, path)
        return path


class _WeightsOnlyTorch(types.ModuleType):
    """``torch`` as seen by ``audiobox_aesthetics.infer`` while it loads: ``load`` is always weights-only."""

    def __init__(self, torch_module):
        super().__init__("torch")
        self._torch = torch_module

    def __getattr__(self, name):
        return getattr(self._torch, name)

    def load(self, f, *args, **kwargs):
        kwargs["weights_only"] = True
        return self._torch.load(f, *args, **kwargs)


@contextlib.contextmanager
def _local_weights_only(infer_module, path: Path):
    """While ``AesPredictor`` is built: its checkpoint is ``path`` or nothing (no hub), read weights-only."""
    import torch

    def local_only(checkpoint_pth):
        if checkpoint_pth is None or not Path(checkpoint_pth).is_file():
            raise MetricUnavailable(
                f"Audiobox Aesthetics checkpoint {checkpoint_pth} is not a local file "
                "(the package would fetch it from the hub; musicbench does not)"
            )
        return checkpoint_pth

    with (
        mock.patch.object(infer_module, "load_model", local_only),
        mock.patch.object(infer_module, "torch", _WeightsOnlyTorch(torch)),
    ):
        yield

"""``hf:<repo-or-directory>``: any Hugging Face audio model that ``transformers`` loads with ``AutoFeatureExtractor`` +
``AutoModel`` (wav2vec2, HuBERT, WavLM, data2vec-audio, MERT with ``--trust-remote-code``, AST, …), as an encoder.

The name: ``hf:<ref>[:layer-N|:layer-mean|:layer-last]``.

* ``<ref>`` is a local directory (written by ``save_pretrained``, or a copy of a hub repository) or a hub
  repository id (``facebook/wav2vec2-base``) that is **already in the Hugging Face cache**. Nothing is downloaded
  unless the caller allows it (the CLI's ``--allow-download``): both ``from_pretrained`` calls get the resolved
  local directory and ``local_files_only=True``. When the model is not found, the message says what to download.
* The layer (the CLI's ``--hf-layer``, or the name's suffix, which lets one suite compare layers of one model):
  ``last`` (default: the model's ``last_hidden_state``), ``N`` (``hidden_states[N]`` with
  ``output_hidden_states=True``: 0 is the input to the first transformer layer, ``num_hidden_layers`` the last
  one's output), or ``mean`` (the mean of every ``hidden_states`` entry, 0 included).
* Pooling: the mean over time (frames or patches) of that layer, per window; windows are mean-pooled as for every
  encoder. Default window: 10 s (hop 10 s, the last window kept short, never padded): self-supervised speech and
  music models are trained on crops of a few seconds, and attention over a whole song needs memory quadratic in its
  length. AST-style extractors with a fixed input length (``max_length`` frames of 10 ms) get windows of exactly
  that length. ``--window`` overrides it.
* ``trust_remote_code`` (a model whose ``config.json`` has an ``auto_map``: it ships its own Python code, e.g.
  MERT) only with the explicit option (``EncoderOptions.trust_remote_code``, the CLI's ``--trust-remote-code``);
  without it such a model is refused before anything runs.
* The model card is read from the files, without importing ``transformers``: sample rate from the feature
  extractor's ``sampling_rate``, dim from the config's ``hidden_size``, layers, model type and architecture, the
  revision (the snapshot's commit hash, when the model comes from the cache) and the licence (the model card's
  ``license:`` line, when there is a README.md). The weights' sha256 covers every file of the directory.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .base import EncoderError, EncoderUnavailable, ModelCard, WindowPolicy
from .pretrained import PretrainedEncoder
from .weights import ResolvedWeights, WeightsNotFound

PREFIX = "hf:"
LAYERS_HELP = "last (the model's last_hidden_state), N (hidden_states[N]; 0 = the transformer's input) or mean"
DEFAULT_WINDOW_SECONDS = 10.0
WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
_SUFFIX = re.compile(r"^(?P<ref>.+):layer-(?P<layer>\d+|mean|last)$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def is_hf(name: str) -> bool:
    return name.startswith(PREFIX)


def check_layer(layer: str | int | None) -> str:
    """``--hf-layer``'s value, normalised (``"last"``, ``"mean"`` or digits); ``ValueError`` otherwise."""
    text = str(layer if layer is not None else "last").strip().lower() or "last"
    if text in ("last", "mean") or text.isdigit():
        return str(int(text)) if text.isdigit() else text
    raise ValueError(f"--hf-layer {layer}: expected {LAYERS_HELP}")


@dataclass(frozen=True)
class HFSpec:
    """A parsed ``hf:`` name: the model reference and the layer."""

    ref: str
    layer: str = "last"

    @property
    def name(self) -> str:
        """The canonical name (a local directory made absolute; the layer suffix unless it is ``last``)."""
        return PREFIX + self.ref + ("" if self.layer == "last" else f":layer-{self.layer}")


def parse(name: str) -> HFSpec:
    if not is_hf(name):
        raise ValueError(f"'{name}' is not an hf: encoder name")
    body, layer = name[len(PREFIX) :].strip(), "last"
    match = _SUFFIX.match(body)
    if match:
        body, layer = match["ref"], match["layer"]
    if not body:
        raise EncoderUnavailable("hf: needs a model: hf:<hub repository id> or hf:<local directory>")
    local = Path(body).expanduser()
    if local.is_dir():
        body = str(local.resolve())
    return HFSpec(body, check_layer(layer))


def with_layer(name: str, layer: str | None) -> str:
    """``name`` with ``--hf-layer`` applied: an ``hf:`` name without its own layer suffix gets ``layer``; other
    names are returned unchanged. The result is canonical (a local directory made absolute)."""
    if not is_hf(name):
        return name
    spec = parse(name)
    if layer is not None and not _SUFFIX.match(name[len(PREFIX) :].strip()):
        spec = HFSpec(spec.ref, check_layer(layer))
    return spec.name


@dataclass(frozen=True)
class Located:
    path: Path
    source: str  # "local" | "hf-cache" | "download"
    revision: str | None  # the snapshot's commit hash, when known


def _hub_cache() -> str:
    import huggingface_hub.constants

    return str(huggingface_hub.constants.HF_HUB_CACHE)


def _missing_message(ref: str) -> str:
    return (
        f"hf:{ref}: the model was not found offline: no directory '{ref}', and no snapshot of the hub repository "
        f"'{ref}' (with config.json) in the Hugging Face cache ({_hub_cache()}). Download it once with "
        f"`huggingface-cli download {ref}` (or `hf download {ref}`; it needs config.json, preprocessor_config.json "
        f"and the weights, model.safetensors or pytorch_model.bin), or save the model and its feature extractor with "
        f"save_pretrained to a directory and use hf:DIRECTORY, or pass --allow-download to let musicbench fetch it."
    )


def locate(spec: HFSpec, allow_download: bool = False) -> Located:
    """Where ``spec``'s files are: the local directory, else the HF cache's snapshot, else (only when allowed) a
    download. ``WeightsNotFound`` saying what to download otherwise. Never touches the network unless allowed."""
    local = Path(spec.ref).expanduser()
    if local.is_dir():
        return Located(local.resolve(), "local", None)
    if not _REPO_ID.match(spec.ref):
        raise WeightsNotFound(
            f"hf:{spec.ref}: no such directory (a hub model is named by its repository id, e.g. "
            f"hf:facebook/wav2vec2-base, and must be in the Hugging Face cache)"
        )
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(spec.ref, "config.json")
    if isinstance(hit, str):
        snapshot = Path(hit).parent
        return Located(snapshot, "hf-cache", snapshot.name)
    if allow_download:
        from huggingface_hub import snapshot_download

        os.environ.pop("HF_HUB_OFFLINE", None)
        snapshot = Path(snapshot_download(spec.ref))
        return Located(snapshot, "download", snapshot.name)
    raise WeightsNotFound(_missing_message(spec.ref))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise EncoderUnavailable(f"cannot read {path}: {error}") from None


def _license(directory: Path) -> str | None:
    """The ``license:`` of a hub model card's YAML front matter (README.md), if any."""
    readme = directory / "README.md"
    try:
        text = readme.read_text(errors="replace")[:20000]
    except OSError:
        return None
    if not text.startswith("---"):
        return None
    front = text[3:].split("\n---", 1)[0]
    match = re.search(r"^license:\s*(\S.*)$", front, flags=re.MULTILINE)
    return match.group(1).strip().strip("'\"") if match else None


@dataclass(frozen=True)
class ModelFacts:
    """What the model's own files say (config.json, preprocessor_config.json, README.md)."""

    config: dict[str, Any]
    preprocessor: dict[str, Any]
    license: str | None

    @property
    def sample_rate(self) -> int:
        return int(self.preprocessor.get("sampling_rate") or 0)

    @property
    def dim(self) -> int:
        for key in ("hidden_size", "d_model", "hidden_dim"):
            if isinstance(self.config.get(key), int):
                return int(self.config[key])
        return 0

    @property
    def layers(self) -> int | None:
        value = self.config.get("num_hidden_layers")
        return int(value) if isinstance(value, int) else None

    @property
    def remote_code(self) -> bool:
        return bool(self.config.get("auto_map")) or bool(self.preprocessor.get("auto_map"))

    @property
    def receptive_samples(self) -> int:
        """The shortest input giving one frame, from a convolutional front end's kernels and strides (1 if none)."""
        kernels, strides = self.config.get("conv_kernel"), self.config.get("conv_stride")
        if not (isinstance(kernels, list) and isinstance(strides, list) and len(kernels) == len(strides)):
            return 1
        field, jump = 1, 1
        for kernel, stride in zip(kernels, strides):
            field += (int(kernel) - 1) * jump
            jump *= int(stride)
        return field

    def window(self) -> WindowPolicy:
        min_seconds = math.ceil(1000 * self.receptive_samples / self.sample_rate) / 1000 if self.sample_rate else 0.0
        if self.preprocessor.get("feature_extractor_type") == "ASTFeatureExtractor":
            seconds = round(int(self.preprocessor.get("max_length", 1024)) * 0.01, 2)  # 10 ms frames
            return WindowPolicy(window_seconds=seconds, pad_last=True, min_seconds=min_seconds)
        return WindowPolicy(window_seconds=DEFAULT_WINDOW_SECONDS, pad_last=False, min_seconds=min_seconds)


def read_facts(directory: Path) -> ModelFacts:
    """The model's facts, checked: config.json, a feature extractor with a sample rate, weights, a hidden size."""
    config_file, preprocessor_file = directory / "config.json", directory / "preprocessor_config.json"
    if not config_file.is_file():
        raise WeightsNotFound(f"{directory} has no config.json: not a transformers model directory")
    if not preprocessor_file.is_file():
        raise WeightsNotFound(
            f"{directory} has no preprocessor_config.json: musicbench needs the model's feature extractor "
            f"(AutoFeatureExtractor: it gives the sample rate and the input normalisation); download it with the "
            f"model, or save it next to the model with feature_extractor.save_pretrained"
        )
    if not any((directory / name).is_file() for name in WEIGHT_FILES):
        raise WeightsNotFound(
            f"{directory} holds no weights ({', '.join(WEIGHT_FILES[:2])}): download them with the model "
            f"(or save the model with save_pretrained)"
        )
    facts = ModelFacts(_read_json(config_file), _read_json(preprocessor_file), _license(directory))
    if facts.sample_rate <= 0:
        raise EncoderUnavailable(f"{preprocessor_file} declares no sampling_rate: not an audio feature extractor")
    if facts.dim <= 0:
        raise EncoderUnavailable(f"{config_file} declares no hidden_size: musicbench cannot tell the embedding size")
    return facts


def make_card(spec: HFSpec, located: Located, facts: ModelFacts) -> ModelCard:
    layers = facts.layers
    architecture = ",".join(facts.config.get("architectures") or []) or facts.config.get("model_type", "?")
    layer_text = {
        "last": "last hidden state",
        "mean": f"mean of all {layers + 1 if layers is not None else ''} hidden states".replace("  ", " "),
    }.get(spec.layer, f"hidden state {spec.layer} of {layers}")
    return ModelCard(
        name=spec.name,
        description=f"Hugging Face {facts.config.get('model_type', 'audio')} model {spec.ref} ({architecture}), "
        f"{layer_text}, mean over time",
        sample_rate=facts.sample_rate,
        dim=facts.dim,
        window=facts.window(),
        license=facts.license or "unknown (see the model's own card)",
        package="transformers",
        weights_id=f"{spec.ref}@{located.revision}" if located.revision else spec.ref,
        captures=f"what the model learned in pre-training (see its model card); {layer_text}, averaged over time",
        extra={
            "hf_model": spec.ref,
            "hf_revision": located.revision or "local",
            "hf_layer": spec.layer,
            "hf_model_type": facts.config.get("model_type", "unknown"),
            "hf_architecture": architecture,
            "hf_num_layers": layers if layers is not None else "unknown",
        },
    )


def _placeholder_card(spec: HFSpec, why: str) -> ModelCard:
    return ModelCard(
        name=spec.name,
        description=f"Hugging Face model {spec.ref} (not usable here: {why})",
        sample_rate=16000,
        dim=0,
        window=WindowPolicy(window_seconds=DEFAULT_WINDOW_SECONDS, pad_last=False),
        license="unknown",
        package="transformers",
        weights_id=spec.ref,
        captures="unknown",
    )


class HFEncoder(PretrainedEncoder):
    """Base of the per-model classes ``encoder_class`` makes (``hf_encoder_class``); see the module's docstring."""

    spec: HFSpec
    install = "'transformers>=4.40,<5'"
    family = "Hugging Face"
    module = "transformers"

    @classmethod
    def _located(cls, options) -> Located:
        allow = bool(getattr(options, "allow_download", False))
        key = "_download" if allow else "_offline"
        if key not in cls.__dict__:
            setattr(cls, key, locate(cls.spec, allow))
        return cls.__dict__[key]

    @classmethod
    def _facts(cls, options) -> tuple[Located, ModelFacts]:
        located = cls._located(options)
        return located, read_facts(located.path)

    @classmethod
    def _resolve(cls, options) -> ResolvedWeights:
        """The model directory, checked (files, layer, remote code) without importing torch or transformers."""
        cls.require_package()
        if getattr(options, "weights", None):
            raise EncoderUnavailable(
                f"--weights does not apply to hf: encoders: the name says where the model is (hf:DIRECTORY or "
                f"hf:REPOSITORY); leave --weights out for {cls.spec.name}"
            )
        located, facts = cls._facts(options)
        if facts.remote_code and not getattr(options, "trust_remote_code", False):
            raise EncoderUnavailable(
                f"{cls.spec.name} ships its own Python code (auto_map in its config): it runs only with "
                f"--trust-remote-code, which executes that code from {located.path}; pass it if you trust the model"
            )
        if cls.spec.layer.isdigit() and facts.layers is not None and int(cls.spec.layer) > facts.layers:
            raise EncoderUnavailable(
                f"{cls.spec.name}: layer {cls.spec.layer} does not exist; the model has {facts.layers} layers "
                f"(--hf-layer 0 = the transformer's input … {facts.layers} = the last layer's output, or mean)"
            )
        return ResolvedWeights(located.path, located.source)

    @classmethod
    def check_available(cls, options) -> str:
        resolved = cls._resolve(options)
        return f"model: {resolved.path} ({resolved.source})"

    @classmethod
    def card_for(cls, options) -> ModelCard:
        located, facts = cls._facts(options)
        card = make_card(cls.spec, located, facts)
        if options is not None and options.window is not None:
            floor = card.window.min_seconds
            window = options.window
            card = card.with_window(
                WindowPolicy(window.window_seconds, window.hop_seconds, window.pad_last, max(window.min_seconds, floor))
            )
        return card

    def __init__(self, options=None):
        from .registry import EncoderOptions

        options = options or EncoderOptions()
        self.trust_remote_code = bool(options.trust_remote_code)
        self.extractor = None
        super().__init__(options)
        self.min_samples = read_facts(Path(self.weights_source)).receptive_samples

    def _load(self, path: Path, device):
        from transformers import AutoFeatureExtractor, AutoModel

        kwargs = {"local_files_only": True, "trust_remote_code": self.trust_remote_code}
        try:
            self.extractor = AutoFeatureExtractor.from_pretrained(str(path), **kwargs)
            model = AutoModel.from_pretrained(str(path), **kwargs)
        except (OSError, ValueError, KeyError) as error:
            raise EncoderUnavailable(f"{self.spec.name}: transformers cannot load {path}: {error}") from error
        return model.float().to(device).eval()

    def _embed_equal_length(self, audio: np.ndarray) -> np.ndarray:
        import torch

        inputs = self.extractor(list(audio), sampling_rate=self.sample_rate, return_tensors="pt")
        device = next(self.model.parameters()).device
        inputs = {
            key: (value.to(device, torch.float32) if value.is_floating_point() else value.to(device))
            for key, value in inputs.items()
            if isinstance(value, torch.Tensor)
        }
        layer = self.spec.layer
        output = self.model(**inputs, output_hidden_states=layer != "last", return_dict=True)
        if layer == "last":
            hidden = output.last_hidden_state
        elif layer == "mean":
            hidden = torch.stack(tuple(output.hidden_states)).mean(dim=0)
        else:
            hidden = output.hidden_states[int(layer)]
        if hidden.ndim != 3 or hidden.shape[-1] != self.dim:
            raise EncoderError(
                f"{self.name}: the model returned hidden states of shape {tuple(hidden.shape)}, expected "
                f"(batch, time, {self.dim}) (the config's hidden_size)"
            )
        return hidden.float().mean(dim=1).cpu().numpy()


_CLASSES: dict[str, type[HFEncoder]] = {}


def hf_encoder_class(name: str) -> type[HFEncoder]:
    """The encoder class of ``hf:`` name ``name`` (one per canonical name). Its class-level card is read from the
    files found offline (imports neither torch nor transformers); when nothing is found, the card is a placeholder
    and ``check_available`` / building raise the message that says what to download."""
    spec = parse(name)
    if spec.name not in _CLASSES:
        try:
            located = locate(spec)
            card = make_card(spec, located, read_facts(located.path))
        except WeightsNotFound:
            card = _placeholder_card(spec, "not found offline")
        except EncoderUnavailable as error:
            card = _placeholder_card(spec, str(error))
        cls = type(f"HFEncoder[{spec.name}]", (HFEncoder,), {"spec": spec, "card": card, "__module__": __name__})
        _CLASSES[spec.name] = cls
    return _CLASSES[spec.name]

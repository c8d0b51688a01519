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

Where a model's files are and what they say (its card): ``hf_model.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .base import EncoderError, EncoderUnavailable, ModelCard, WindowPolicy
from .hf_model import Located, ModelFacts, locate, make_card, placeholder_card, read_facts
from .pretrained import PretrainedEncoder
from .weights import ResolvedWeights, WeightsNotFound

PREFIX = "hf:"
LAYERS_HELP = "last (the model's last_hidden_state), N (hidden_states[N]; 0 = the transformer's input) or mean"
_SUFFIX = re.compile(r"^(?P<ref>.+):layer-(?P<layer>\d+|mean|last)$")


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
            card = placeholder_card(spec, "not found offline")
        except EncoderUnavailable as error:
            card = placeholder_card(spec, str(error))
        cls = type(f"HFEncoder[{spec.name}]", (HFEncoder,), {"spec": spec, "card": card, "__module__": __name__})
        _CLASSES[spec.name] = cls
    return _CLASSES[spec.name]

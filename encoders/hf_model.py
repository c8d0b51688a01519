"""A Hugging Face model's files, read without importing ``transformers``: where they are (``locate``: a local
directory, the Hugging Face cache, or a download when allowed), what they say (``read_facts``: config.json,
preprocessor_config.json, README.md) and the model card made of them (``make_card``)."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import EncoderUnavailable, ModelCard, WindowPolicy
from .weights import WeightsNotFound

if TYPE_CHECKING:
    from .hf import HFSpec

DEFAULT_WINDOW_SECONDS = 10.0
WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


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


def placeholder_card(spec: HFSpec, why: str) -> ModelCard:
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

"""Audio encoders for musicbench. Importing this package imports no model package."""

from .runtime import set_offline_defaults

set_offline_defaults()  # before anything imports huggingface_hub/transformers, which read these once

from .base import Encoder, EncoderError, EncoderUnavailable, ModelCard, WindowPolicy  # noqa: E402
from .registry import EncoderOptions, build, names  # noqa: E402

__all__ = [
    "Encoder",
    "EncoderError",
    "EncoderUnavailable",
    "EncoderOptions",
    "ModelCard",
    "WindowPolicy",
    "build",
    "names",
]

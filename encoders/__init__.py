"""Audio encoders for musicbench. Importing this package imports no model package."""
from .base import Encoder, EncoderError, EncoderUnavailable, ModelCard, WindowPolicy
from .registry import EncoderOptions, build, names

__all__ = ["Encoder", "EncoderError", "EncoderUnavailable", "EncoderOptions", "ModelCard", "WindowPolicy",
           "build", "names"]

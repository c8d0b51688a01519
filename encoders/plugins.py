"""Plug-ins: encoders and pair metrics that other packages declare through entry points.

A package adds an encoder (or a metric) to musicbench without a line of musicbench changed::

    [project.entry-points."musicbench.encoders"]
    myenc = "mypkg.enc:MyEncoder"
    [project.entry-points."musicbench.metrics"]
    mymetric = "mypkg.metrics:MyMetric"

Discovery is lazy: ``discover(group)`` reads the installed distributions' entry-point metadata
(``importlib.metadata``) and imports **no plug-in**. ``Plugin.load()`` imports one, when it is used or listed in
detail; any failure (a missing module, an exception at import, a missing attribute) becomes ``PluginError`` with
the original error named, so a broken plug-in is reported as unavailable and never breaks the command line.
``Plugin.module_found()`` says whether the plug-in's module exists on ``sys.path`` without executing any of it.

A library module (standard library only): ``encoders.registry`` and ``metrics.registry`` use it; it imports
neither of them.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
from dataclasses import dataclass

ENCODER_GROUP = "musicbench.encoders"
METRIC_GROUP = "musicbench.metrics"


class PluginError(ImportError):
    """A plug-in could not be imported or does not name a class; the message names the plug-in and the cause."""


@dataclass(frozen=True)
class Plugin:
    """One entry point of a plug-in group: its name, ``module:attr`` target and the distribution declaring it."""

    name: str
    target: str  # "module:attr"
    group: str
    distribution: str | None = None  # the installed distribution that declares it
    version: str | None = None
    #: set when the name cannot be used (taken by a built-in or by another plug-in): why
    conflict: str | None = None

    @property
    def module(self) -> str:
        return self.target.partition(":")[0].strip()

    @property
    def source(self) -> str:
        """Where it comes from, for listings: ``dist version``."""
        if not self.distribution:
            return "unknown distribution"
        return f"{self.distribution} {self.version}" if self.version else self.distribution

    def module_found(self) -> tuple[bool, str]:
        """Whether the plug-in's module can be found, **without importing it** or its parents (the top-level name
        through every import finder, editable installs' included; each deeper level with ``PathFinder`` in its
        parent's folders): a missing module is reported here; an error raised when the module runs is known only
        to ``load()``."""
        parts = self.module.split(".")
        if not all(parts):
            return False, f"entry point '{self.target}' does not name a module"
        path = None
        for depth in range(len(parts)):
            name = ".".join(parts[: depth + 1])
            try:
                if depth == 0:
                    spec = importlib.util.find_spec(name)  # a top-level name: no import
                else:
                    spec = importlib.machinery.PathFinder.find_spec(name, path)
            except (ImportError, ValueError) as error:
                return False, f"{type(error).__name__}: {error}"
            if spec is None:
                return False, f"module '{name}' not found (is the distribution installed completely?)"
            path = spec.submodule_search_locations
            if depth < len(parts) - 1 and path is None:
                return False, f"'{name}' is a module, not a package: '{self.module}' cannot be found"
        return True, "module found (not imported)"

    def load(self):
        """Import the module and return the attribute the entry point names; ``PluginError`` on any failure."""
        if self.conflict:
            raise PluginError(f"plug-in '{self.name}' ({self.source}) is not used: {self.conflict}")
        try:
            return load_target(self.target)
        except Exception as error:  # noqa: BLE001 - whatever a third-party import raises, the plug-in is unavailable
            raise PluginError(
                f"plug-in '{self.name}' ({self.source}, entry point {self.target}) failed to load: "
                f"{type(error).__name__}: {error}"
            ) from error


def load_target(target: str):
    """``"pkg.module:Attr.attr"`` → that object (imports the module). Exceptions propagate unchanged."""
    module_name, sep, attribute = target.partition(":")
    module_name, attribute = module_name.strip(), attribute.strip()
    if not sep or not module_name or not attribute:
        raise ValueError(f"'{target}' is not of the form module:Class")
    obj = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


_CACHE: dict[str, dict[str, Plugin]] = {}


def discover(group: str, reserved: tuple[str, ...] | list[str] = (), *, refresh: bool = False) -> dict[str, Plugin]:
    """Every entry point of ``group`` in the installed distributions, by name, **imported: none**.

    A name in ``reserved`` (the built-ins) or already declared by another distribution is kept, with ``conflict``
    saying why it is not used (the built-in, or the first distribution found, wins). Cached per group; ``refresh``
    reads the metadata again (e.g. after a test put a distribution on ``sys.path``)."""
    if refresh or group not in _CACHE:
        from importlib.metadata import entry_points

        found: dict[str, Plugin] = {}
        for entry in entry_points(group=group):
            dist = getattr(entry, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else None
            plugin = Plugin(entry.name, entry.value, group, dist_name, dist.version if dist is not None else None)
            if entry.name in found:
                first = found[entry.name]
                if first.distribution == dist_name and first.target == entry.value:
                    continue  # the same distribution seen twice on sys.path
                plugin = _with_conflict(plugin, f"the name is already declared by {first.source}")
                found[f"{entry.name} ({plugin.source})"] = plugin
                continue
            found[entry.name] = plugin
        _CACHE[group] = found
    plugins = _CACHE[group]
    return {
        name: _with_conflict(plugin, f"'{name}' is a built-in name; use {plugin.target} instead")
        if name in reserved and not plugin.conflict
        else plugin
        for name, plugin in plugins.items()
    }


def _with_conflict(plugin: Plugin, why: str) -> Plugin:
    return Plugin(plugin.name, plugin.target, plugin.group, plugin.distribution, plugin.version, why)


def forget() -> None:
    """Drop the cached discovery (the next ``discover`` reads the installed metadata again)."""
    _CACHE.clear()

"""The ``musicbench`` command line: the only package that knows click; heavy imports happen inside commands.

``group.py`` is the click group; ``common.py`` the shared options and parsing; ``running.py`` run, suite and
demo; ``results.py`` compare, regress and baseline; ``tools.py`` encoders and random-weights; ``check.py``
check-encoder and metrics; ``report.py`` report.
"""

from . import check, report, results, running, tools  # noqa: F401 - each module adds its commands to the group
from .group import main

__all__ = ["main"]

"""The ``musicbench`` command line: the only package that knows click; heavy imports happen inside commands.

``group.py`` is the click group; shared by the commands: ``common.py`` (one-line user errors, option-value parsing),
``options.py`` (the shared option declarations), ``checks.py`` (option values checked before any work),
``run_config.py`` (run/suite options → ``RunConfig``). The commands: ``running.py`` run, suite and demo;
``results.py`` compare, regress and baseline; ``tools.py`` encoders and random-weights; ``check.py`` check-encoder
and metrics; ``report.py`` report.
"""

from . import check, report, results, running, tools  # noqa: F401 - each module adds its commands to the group
from .group import main

__all__ = ["main"]

"""Ctrl-C and SIGTERM: how a run or a suite is stopped from outside, and the exit status that says so.

SIGINT arrives as ``KeyboardInterrupt``; ``handle_sigterm`` makes SIGTERM arrive as ``Terminated`` (a
``KeyboardInterrupt``), so that both unwind the same way: the MLflow run ends KILLED with the reason
(``tracking.started_run``), and the command line exits with ``128 + the signal number``, as a shell reports a
process killed by that signal: 130 for SIGINT, 143 for SIGTERM (``exit_status``).
"""

from __future__ import annotations

import signal

#: exit statuses of an interrupted command (128 + signal number, the shell convention)
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: end the run as KILLED, like Ctrl-C."""


def raise_terminated(signum, frame):  # pragma: no cover - exercised by the reliability tests
    raise Terminated(f"received signal {signum}")


def handle_sigterm() -> None:
    """From now on SIGTERM raises ``Terminated`` in the main thread (elsewhere: nothing to do, signals are not
    delivered there). Worker processes reset SIGTERM to its default (``parallel``)."""
    try:
        signal.signal(signal.SIGTERM, raise_terminated)
    except ValueError:  # not the main thread
        pass


def exit_status(error: KeyboardInterrupt) -> int:
    """143 for SIGTERM (``Terminated``), 130 for Ctrl-C."""
    return EXIT_TERMINATED if isinstance(error, Terminated) else EXIT_INTERRUPTED

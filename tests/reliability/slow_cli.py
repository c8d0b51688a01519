"""``musicbench`` with one extra, test-only encoder: ``slow-mfcc`` (MFCC statistics that sleep per window).

Used by the killed-run tests to make a run slow *deterministically* (no timing guesses in the tests):
``python tests/reliability/slow_cli.py run --encoder slow-mfcc ...``. The delay per embedded window is
``$MUSICBENCH_TEST_SLOW_SECONDS`` (default 0.05 s); nothing outside this file reads that variable. The encoder
is registered in this process only, through ``encoders.registry.ENCODERS`` (name → "module:Class").
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from encoders.base import ModelCard  # noqa: E402
from encoders.mfcc import MFCCStats  # noqa: E402


class SlowMFCC(MFCCStats):
    card = ModelCard(
        **{
            **MFCCStats.card.__dict__,
            "name": "slow-mfcc",
            "description": "MFCC statistics, slowed down per window (tests only)",
        }
    )

    def embed(self, batch):
        time.sleep(float(os.environ.get("MUSICBENCH_TEST_SLOW_SECONDS", "0.05")) * len(batch))
        return super().embed(batch)


def main() -> None:
    from encoders import registry

    # A process started in the background (CI shells, `cmd &`) inherits SIGINT *ignored*; a terminal's Ctrl-C
    # reaches a foreground `musicbench run` as KeyboardInterrupt. Behave like the latter.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)

    registry.ENCODERS["slow-mfcc"] = "slow_cli:SlowMFCC"
    from benchmark.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()

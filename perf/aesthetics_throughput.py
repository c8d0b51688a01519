"""Audiobox Aesthetics on CPU: seconds of compute per minute of audio (random-init weights, same architecture).

python perf/aesthetics_throughput.py [--seconds 60] [--repeats 2]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from perf.common import Target, print_table  # noqa: E402  (after the sys.path set-up)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=2)
    return parser


def main(argv: list[str] | None = None) -> list[Target]:
    """One informational row (no target): seconds of compute per minute of audio."""
    args = build_parser().parse_args(argv)
    import numpy as np

    from metrics.aesthetics import Aesthetics
    from metrics.registry import MetricOptions

    rng = np.random.default_rng(0)
    t = np.arange(int(args.seconds * 16000)) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Aesthetics.write_random_weights(Path(tmp))
        metric = Aesthetics(MetricOptions(weights={"aesthetics": str(path)}))
        metric.file_features(audio[:16000])  # warm-up: loads the model
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            metric.file_features(audio)
            times.append(time.perf_counter() - started)
    per_minute = min(times) * 60.0 / args.seconds
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"aesthetics: best of {args.repeats}: {min(times):.1f} s for {args.seconds:g} s of audio "
        f"= {per_minute:.1f} s per minute of audio; peak RSS {peak:.0f} MB"
    )
    return [
        Target(
            "info: aesthetics metric compute (random-init weights)",
            f"{per_minute:.1f} s per audio-min",
            True,
            f"best of {args.repeats} on {args.seconds:g} s of audio; peak RSS of the measuring process {peak:.0f} MB",
            info=True,
        )
    ]


if __name__ == "__main__":
    print_table(main())

"""What the perf scripts share: generated audio, timing subprocesses side by side, peak memory, the results table.

Every script exposes ``main(argv) -> list[Target]``; ``perf/bench.py`` runs them all (``make bench``) and prints
one table. Timings are wall times of whole processes or stages, measured side by side in interleaved rounds on the
same machine; the ratios are what to read, since absolute times drift on shared 2-core machines.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
MUSICBENCH = str(Path(PYTHON).with_name("musicbench"))


@dataclass
class Target:
    """One line of the table: what is promised, what was measured, and whether it holds."""

    name: str
    measured: str
    passed: bool
    detail: str = ""
    info: bool = False  # a figure to know, not a promise: shown as "info", never fails the bench


def work_dir(name: str) -> Path:
    """A reusable folder for generated data ($MUSICBENCH_HOME/perf/<name>)."""
    home = Path(os.environ.get("MUSICBENCH_HOME", Path.home() / ".cache" / "musicbench")).expanduser()
    folder = home / "perf" / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def synth_music(seconds: float, sample_rate: int, seed: int, channels: int = 1):
    """Deterministic music-like audio: a few harmonic notes changing every half second, plus a little noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    notes = 220.0 * 2 ** (rng.integers(0, 24, size=int(np.ceil(seconds * 2)) + 1) / 12)
    freq = notes[(t * 2).astype(int)]
    phase = 2 * np.pi * np.cumsum(freq) / sample_rate
    y = sum(np.sin(h * phase) / h for h in (1, 2, 3)) + 0.05 * rng.standard_normal(n)
    y = (0.25 * y / np.max(np.abs(y))).astype(np.float32)
    return np.stack([y, np.roll(y, 7)], axis=1) if channels == 2 else y


def write_files(
    folder: Path,
    count: int,
    seconds: float,
    sample_rate: int,
    channels: int = 1,
    prefix: str = "track",
    first_seed: int = 0,
) -> list[Path]:
    """``count`` wav files of generated audio in ``folder`` (kept when already there), seeded ``first_seed``,
    ``first_seed + 1``, …: give each folder of one data set its own seeds, or its files are byte-identical to
    another's (musicbench embeds identical content once; a loop embeds every file)."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{prefix}{i:04d}.wav"
        if not path.exists():
            sf.write(path, synth_music(seconds, sample_rate, seed=first_seed + i, channels=channels), sample_rate)
        paths.append(path)
    return paths


def timed(command: list[str], env: dict | None = None) -> float:
    """Wall seconds of a subprocess; raises with its output when it fails."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})})
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        )
    return elapsed


def interleaved(commands: dict[str, callable], rounds: int) -> dict[str, float]:
    """Median seconds of each callable, run in interleaved rounds (a, b, a, b, …) so drift hits both alike."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, run in commands.items():
            times[name].append(run())
    return {name: statistics.median(values) for name, values in times.items()}


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def verdict(target: Target) -> str:
    return "info" if target.info else "PASS" if target.passed else "FAIL"


def print_table(targets: list[Target]) -> None:
    width = max([len(t.name) for t in targets] + [6])
    print(f"{'target':<{width}}  {'measured':<28}  result")
    for target in targets:
        print(
            f"{target.name:<{width}}  {target.measured:<28}  {verdict(target)}"
            + (f"  ({target.detail})" if target.detail else "")
        )

"""Helpers shared by the reliability tests.

Imported as ``reliability_helpers``; pytest puts this folder on ``sys.path``.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf
from audio_factory import SR, tone  # noqa: F401  (the reliability tests import them from here)

if TYPE_CHECKING:
    import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def wav_bytes(audio: np.ndarray, sr: int = SR, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, sr, format="WAV", subtype=subtype)
    return buffer.getvalue()


def tone_folder(folder: Path, n: int, seconds: float, start_hz: float = 180.0, prefix: str = "f") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{prefix}{i:04d}.wav"
        sf.write(path, tone(start_hz * 2 ** (i / 12), seconds, noise=0.01, seed=i), SR)
        paths.append(path)
    return paths


def run_args(encoder: str, refs, targets, cache, experiment: str) -> list[str]:
    """The arguments of ``musicbench run`` with ``encoder`` on two folders, a cache and an experiment."""
    return [
        "run",
        "--encoder",
        encoder,
        "--refs",
        str(refs),
        "--targets",
        str(targets),
        "--cache-dir",
        str(cache),
        "--experiment",
        experiment,
    ]


def invoke(*args: str):
    """``musicbench <args>`` in-process (CliRunner), into the isolated MLflow store of tests/conftest.py."""
    from click.testing import CliRunner

    from benchmark.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def runs(experiment: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def artifact_csv(run_id: str, path: str) -> pd.DataFrame:
    import pandas as pd
    from mlflow.tracking import MlflowClient

    local = MlflowClient().download_artifacts(run_id, path)
    return pd.read_csv(local, keep_default_na=False, na_values=[""])


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a ``musicbench`` child process: this test session's isolated store and home."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(HERE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def cli_command(*args: str, slow: bool = False) -> list[str]:
    """``python -m benchmark.cli <args>``; ``slow=True`` runs the same CLI with the test-only ``slow-mfcc``
    encoder registered (see slow_cli.py)."""
    entry = [str(HERE / "slow_cli.py")] if slow else ["-m", "benchmark.cli"]
    return [sys.executable, *entry, *args]


def cache_entries(cache_root: Path) -> list[Path]:
    return sorted(cache_root.rglob("*.npy"))


def wait_for(predicate, timeout: float, interval: float = 0.02, process: subprocess.Popen | None = None):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s or if ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"process exited early ({process.returncode}):\n{out}\n{err}")
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")

"""Shared fixtures: isolated musicbench home / MLflow store, tiny synthetic audio, the demo set (built once),
random-init weights (written once per session).

Synthetic audio for any test: ``from audio_factory import tone, sine, melody`` (tests/audio_factory.py).
Heavy libraries (torch, mlflow, model packages) are imported inside fixtures and tests, never at module level:
collection stays fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import soundfile as sf
from audio_factory import tone
from cli_helpers import dataset_args

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session", autouse=True)
def isolated_home(tmp_path_factory):
    """Tests never write to ~/.cache/musicbench or ./mlruns."""
    home = tmp_path_factory.mktemp("musicbench-home")
    saved = {k: os.environ.get(k) for k in ("MUSICBENCH_HOME", "MUSICBENCH_CACHE", "MLFLOW_TRACKING_URI")}
    os.environ["MUSICBENCH_HOME"] = str(home)
    os.environ.pop("MUSICBENCH_CACHE", None)
    os.environ["MLFLOW_TRACKING_URI"] = "sqlite:///" + str(home / "mlruns" / "mlflow.db")
    (home / "mlruns").mkdir()
    yield home
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def isolated_process_state():
    """What one test leaves in this process never reaches the next: the environment (in-process CLI calls set
    MLflow/musicbench variables for their own process) and an MLflow run left active."""
    saved = dict(os.environ)
    yield
    mlflow = sys.modules.get("mlflow")
    while mlflow is not None and mlflow.active_run() is not None:
        mlflow.end_run()
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def tiny_dataset(tmp_path) -> dict[str, Path]:
    """4 references and 2 targets of 1.5 s tones at 22.05 kHz; each target's relevant ref is the same note."""
    sr = 22050
    refs, targets = tmp_path / "refs", tmp_path / "targets"
    refs.mkdir()
    targets.mkdir()
    notes = {"a4": 440.0, "c5": 523.25, "e5": 659.25, "g5": 783.99}
    for name, freq in notes.items():
        sf.write(refs / f"{name}.wav", tone(freq, 1.5, sr), sr)
    sf.write(targets / "a4_noisy.wav", tone(440.0, 1.2, sr, noise=0.05, seed=1), sr)
    sf.write(targets / "e5_noisy.wav", tone(659.25, 1.2, sr, noise=0.05, seed=2), sr)
    gt = tmp_path / "ground_truth.csv"
    gt.write_text("target,reference\na4_noisy.wav,a4.wav\ne5_noisy.wav,e5.wav\n")
    return {"refs": refs, "targets": targets, "ground_truth": gt, "root": tmp_path}


@pytest.fixture(scope="session")
def demo_set(tmp_path_factory):
    from benchmark.demo import build_demo

    return build_demo(tmp_path_factory.mktemp("demo") / "v1", progress=False)


@pytest.fixture
def network_calls(monkeypatch):
    """Any socket connection fails and is recorded (the list is returned: assert it stays empty)."""
    import socket

    calls = []

    def refuse(sock, address, *args):
        calls.append(address)
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return calls


@pytest.fixture
def no_weights(tmp_path, monkeypatch, network_calls):
    """No $MUSICBENCH_WEIGHTS, an empty Hugging Face cache, no network; returns the recorded connection attempts."""
    import huggingface_hub.constants

    monkeypatch.delenv("MUSICBENCH_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    return network_calls


@pytest.fixture
def run_on_tiny(tiny_dataset):
    """``run_on_tiny(experiment, encoder="mfcc", metrics="none")`` → the id of a finished CLI run on
    ``tiny_dataset``."""
    from click.testing import CliRunner

    from benchmark.cli import main

    def run(experiment: str, encoder: str = "mfcc", metrics: str = "none") -> str:
        result = CliRunner().invoke(
            main,
            [
                "run",
                "--encoder",
                encoder,
                *dataset_args(tiny_dataset, tiny_dataset["root"] / "cache", metrics=metrics),
                "--experiment",
                experiment,
            ],
        )
        assert result.exit_code == 0, result.output
        return result.output.split("MLflow run ")[1].split()[0]

    return run


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory):
    """``random_weights(name, **options)`` → the path of a seeded random-init checkpoint of encoder or metric
    ``name`` (e.g. ``"clap"``, ``"muq"``, ``"aesthetics"``), in its library's own format.

    Written once per session and per (name, options) into its own temporary folder, by the code behind
    ``musicbench random-weights``; ``options`` go to the class's ``write_random_weights`` (``small=True`` for muq).
    Shared by every test that asks: copy the file before changing it. Writing one builds the model: tests that
    use it are marked ``slow``.
    """
    written: dict[tuple, Path] = {}

    def get(name: str, **options) -> Path:
        key = (name, tuple(sorted(options.items())))
        if key not in written:
            written[key] = _write_random_weights(name, tmp_path_factory.mktemp(f"weights-{name}"), **options)
        return written[key]

    return get


def _write_random_weights(name: str, directory: Path, **options) -> Path:
    from encoders import registry as encoder_registry

    if name in encoder_registry.ENCODERS:
        if not options:
            return encoder_registry.write_random_weights(name, directory)
        return encoder_registry.encoder_class(name).write_random_weights(directory, **options)
    from metrics import registry as metric_registry

    return type(metric_registry.create(name)).write_random_weights(directory, **options)

"""Neural encoders whose model loads in worker processes (``PretrainedEncoder.parallel = "process"``: CLAP on the CPU).

A run embeds their files in workers forked from the fork server that imported the model package while the run set
itself up: the run's own process never imports it, and the embeddings are the in-process ones. An unusable
checkpoint ends the run with its own message (it is never each file's failure), on either path. Also here: what
makes those workers start sooner (scikit-learn deferred while laion_clap is imported, the device known without
torch, hashing ahead that never waits for a fork server still importing)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark import embedding, embedding_workers, prehash
from benchmark.cache import ArrayCache
from benchmark.data import content_hash, discover
from benchmark.decoding import decode
from encoders import pretrained, runtime, torch_utils
from encoders.base import UnusableWeights
from encoders.clap import CLIP_SAMPLES, ClapEncoder
from encoders.mfcc import MFCCStats
from encoders.registry import EncoderOptions

ROOT = Path(__file__).resolve().parents[1]

RUN_AND_REPORT = """
import sys
from benchmark.cli import main

if __name__ == "__main__":
    try:
        main(sys.argv[1:], standalone_mode=False)
    finally:
        from benchmark.parallel import forkserver_running

        print("laion_clap imported by the run's process:", "laion_clap" in sys.modules)
        print("fork server still running:", forkserver_running())
"""


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    script = tmp_path / "run_and_report.py"
    script.write_text(RUN_AND_REPORT)
    return subprocess.run(
        [sys.executable, str(script), "run", *args, "--metrics", "none", "--no-progress"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"},
        timeout=600,
    )


@pytest.mark.slow
def test_clap_embeds_in_workers_exactly_as_in_process(tmp_path, tiny_dataset, random_weights):
    weights = random_weights("clap")
    cache_dir = tmp_path / "cache"
    done = _run(
        tmp_path,
        *("--encoder", "clap", "--weights", str(weights), "--cache-dir", str(cache_dir)),
        *("--refs", str(tiny_dataset["refs"]), "--targets", str(tiny_dataset["targets"])),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "laion_clap imported by the run's process: False" in done.stdout  # the workers embedded every file
    assert "fork server still running: False" in done.stdout  # stopped once the embed stage was over
    assert done.stderr.count("torch.meshgrid") <= 1  # a warning raised while each worker loads is shown once

    encoder = ClapEncoder(EncoderOptions(weights=str(weights), device="cpu"))
    cache = ArrayCache(cache_dir, encoder.cache_identity())
    files = sorted(Path(tiny_dataset["refs"]).glob("*.wav")) + sorted(Path(tiny_dataset["targets"]).glob("*.wav"))
    for path in files:
        cached = cache.get(content_hash(path))
        expected = encoder.embed_audio(decode(path, encoder.sample_rate))
        # one torch thread per worker against two here: the same numbers up to float32 summation order
        assert np.abs(cached - expected).max() <= 1e-5, path.name


@pytest.fixture
def broken_clap(tmp_path, random_weights):
    checkpoint = torch.load(random_weights("clap"), map_location="cpu", weights_only=True)
    del checkpoint["state_dict"]["module.audio_projection.0.weight"]
    path = tmp_path / "broken" / "630k-audioset-best.pt"
    path.parent.mkdir()
    torch.save(checkpoint, path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("processes", [False, True], ids=["here", "in-workers"])
def test_an_unusable_checkpoint_is_the_runs_error_not_each_files(broken_clap, tiny_dataset, tmp_path, processes):
    encoder = ClapEncoder(EncoderOptions(weights=str(broken_clap), device="cpu"))  # the model is loaded later
    found = discover(tiny_dataset["refs"], "reference")
    hashes = {item.path: content_hash(item.path) for item in found}
    cache = ArrayCache(tmp_path / "cache", encoder.cache_identity())
    with pytest.raises(UnusableWeights, match="audio_projection.0.weight"):
        embedding.embed_files(found, "reference", encoder, cache, hashes, progress=False, processes=processes)
    assert not list(cache.folder.rglob("*.npy"))


@pytest.mark.slow
def test_a_run_with_an_unusable_checkpoint_fails_with_its_message(broken_clap, tiny_dataset, tmp_path):
    done = _run(
        tmp_path,
        *("--encoder", "clap", "--weights", str(broken_clap), "--cache-dir", str(tmp_path / "cache")),
        *("--refs", str(tiny_dataset["refs"]), "--targets", str(tiny_dataset["targets"])),
    )
    assert done.returncode != 0
    assert "audio_projection.0.weight" in done.stdout + done.stderr
    assert "encoder failed" not in done.stdout + done.stderr  # not one failure per file


def test_a_model_loads_in_workers_only_when_their_fork_server_imported_its_package(tiny_dataset, monkeypatch):
    found = discover(tiny_dataset["refs"], "reference")
    clap = ClapEncoder.__new__(ClapEncoder)  # its class's choices, without weights
    preloaded: set[str] = set()
    monkeypatch.setattr(embedding_workers, "forkserver_preloads", lambda modules: set(modules) <= preloaded)
    assert not embedding_workers.use_processes(clap, found[:1], workers=2)  # this process would load it
    preloaded |= embedding_workers.worker_modules(ClapEncoder)
    assert embedding_workers.use_processes(clap, found[:1], workers=2)  # one file is enough: the import is done
    assert not embedding_workers.use_processes(clap, found, workers=1)
    clap.parallel = "thread"  # what an encoder on CUDA says: one model there, fed from this process
    assert not embedding_workers.use_processes(clap, found, workers=2)
    assert not embedding_workers.use_processes(MFCCStats(), found[:1], workers=2)  # weight-free: ≥ 2 files


def test_worker_modules_import_laion_clap_as_the_encoder_does():
    code = (
        "import sys; import encoders.clap_runtime; "
        "print(sorted(m for m in ('laion_clap', 'clap_module.htsat', 'torchlibrosa.stft') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "['clap_module.htsat', 'laion_clap', 'torchlibrosa.stft']"


def test_laion_clap_is_imported_without_scikit_learn_which_loads_when_used():
    code = """
import sys
from encoders.runtime import import_laion_clap
import_laion_clap()
print("after import:", "sklearn" in sys.modules)
from clap_module import loss
print("auc:", loss.roc_auc_score([0, 1, 1], [0.1, 0.8, 0.4]))
import sklearn.metrics
print("real module:", type(sys.modules["sklearn.metrics"]).__name__, callable(sklearn.metrics.ndcg_score))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "after import: False" in done.stdout
    assert "auc: 1.0" in done.stdout
    assert "real module: module True" in done.stdout


def test_deferred_modules_leave_imported_modules_alone_and_clean_up(monkeypatch):
    monkeypatch.delitem(sys.modules, "musicbench_never_imported", raising=False)
    with runtime.deferred_modules("json", "musicbench_never_imported"):
        assert sys.modules["json"].dumps is __import__("json").dumps  # already imported: the real one
        from musicbench_never_imported import something  # type: ignore[import-not-found]

        assert repr(something) == "<deferred musicbench_never_imported.something>"
    assert "musicbench_never_imported" not in sys.modules
    with pytest.raises(ModuleNotFoundError):
        something()  # used: the real module is imported, and here there is none


def test_the_cpu_is_known_without_torch_only_when_nothing_else_is_possible(monkeypatch):
    monkeypatch.setattr(torch_utils, "package_version", lambda dist: "2.13.0+cpu")
    assert torch_utils.known_cpu("cpu") and torch_utils.known_cpu("auto") and torch_utils.known_cpu(None)
    assert not torch_utils.known_cpu("cuda")
    monkeypatch.setattr(torch_utils, "package_version", lambda dist: "2.13.0")  # a build that may have CUDA
    assert torch_utils.known_cpu("cpu") and not torch_utils.known_cpu("auto")


def test_native_bf16_reads_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(pretrained, "_cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    assert pretrained.native_bf16("cpu") and pretrained.native_bf16(torch.device("cpu"))
    monkeypatch.setattr(pretrained, "_cpu_flags", lambda: {"avx2", "amx_bf16"})
    assert pretrained.native_bf16("cpu")
    monkeypatch.setattr(pretrained, "_cpu_flags", lambda: {"avx2", "avx512f"})
    assert not pretrained.native_bf16("cpu")
    assert pretrained.native_bf16("cuda")


@pytest.mark.slow
def test_a_lazily_loaded_model_is_pickled_without_it(random_weights):
    import pickle

    encoder = ClapEncoder(EncoderOptions(weights=str(random_weights("clap")), device="cpu"))
    assert encoder._model is None and encoder._device is None  # nothing loaded, torch not asked for the device
    audio = np.sin(np.arange(CLIP_SAMPLES // 4, dtype=np.float32) / 20.0)
    before = encoder.embed([audio])
    copy = pickle.loads(pickle.dumps(encoder))
    assert encoder._model is not None and copy._model is None  # the copy loads its own, from the same weights
    np.testing.assert_array_equal(copy.embed([audio]), before)


def test_hashing_ahead_never_waits_for_a_process_still_starting(tmp_path, monkeypatch):
    """While the fork server is still importing, the hashing process cannot start: ``take`` hashes nothing it
    would have to wait for, and ``finish`` returns at once."""
    (tmp_path / "a.wav").write_bytes(b"RIFF")
    started = threading.Event()

    class Starting:
        """A pool whose process has not started yet: its first task completes only when told to."""

        def submit(self, fn, *args):
            future: Future = Future()
            future.set_running_or_notify_cancel()
            threading.Thread(target=lambda: (started.wait(60), future.set_result(None)), daemon=True).start()
            return future

        def shutdown(self, wait=True, cancel_futures=False):
            started.set()

    monkeypatch.setattr("benchmark.parallel.forkserver_running", lambda: True)
    monkeypatch.setattr("benchmark.parallel.forkserver_executor", lambda *args, **kwargs: Starting())
    try:
        assert prehash.start([tmp_path], tmp_path / "cache")
        info = os.stat(tmp_path / "a.wav")
        taken: list = []
        for call in (lambda: taken.append(prehash.take(tmp_path / "a.wav", info)), prehash.finish):
            caller = threading.Thread(target=call)
            caller.start()
            caller.join(5)
            assert not caller.is_alive()  # returned at once
        assert taken == [None]  # not handed over: the caller hashes it itself
    finally:
        started.set()
        prehash.finish()


def test_a_worker_takes_its_share_of_the_cores(monkeypatch):
    """Two files at once: a torch thread each on 2 cores; a file embedded alone (one long file): both cores."""
    clap = ClapEncoder.__new__(ClapEncoder)
    monkeypatch.setattr(pretrained, "available_cores", lambda: 2)
    before = torch.get_num_threads()
    try:
        clap.in_worker(2)
        assert torch.get_num_threads() == 1
        clap.in_worker(1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)

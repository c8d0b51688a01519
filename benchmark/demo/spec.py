"""The demo set's specification: which music21-corpus pieces, rendered in which versions.

Each *piece* is rendered in several *versions* (GM instrument(s), tempo, transposition, excerpt
start, added fixed-seed noise, synthetic reverb).  ``refs/`` holds one or two versions of every
*query* piece plus many *distractor* pieces; ``targets/`` holds other versions of the query pieces.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

#: Bump whenever the content (spec, rendering, post-processing) changes: a dest built by another
#: builder version is rebuilt.
BUILDER_VERSION = "1.0.0"

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
    Piece(
        "bwv66.6",
        "bach/bwv66.6.mxl",
        76,
        refs=(V("piano", seconds=18),),
        targets=(V("piano", tempo=0.85, snr_db=20, seconds=15),),
    ),
    Piece(
        "bwv248.28",
        "bach/bwv248.28.mxl",
        84,
        refs=(V("strings", seconds=18),),
        targets=(V("strings", tempo=1.2, snr_db=20, seconds=12),),
    ),
    Piece(
        "bwv40.8",
        "bach/bwv40.8.mxl",
        84,
        refs=(V("quartet", seconds=20),),
        targets=(V("quartet", transpose=-3, snr_db=15, seconds=16),),
    ),
    Piece(
        "johnson_lift_every_voice",
        "johnson_j_r/lift_every_voice.mxl",
        72,
        refs=(V("choir", seconds=18),),
        targets=(V("choir", transpose=2, tempo=0.9, snr_db=20, seconds=15),),
    ),
    Piece(
        "haydn_op1no1_mvt1",
        "haydn/opus1no1/movement1.mxl",
        112,
        refs=(V("quartet", seconds=18),),
        targets=(V("quartet", transpose=-1, tempo=1.1, reverb=True, seconds=14),),
    ),
    # two references; targets match one reference's timbre or the other's key
    Piece(
        "bwv1.6",
        "bach/bwv1.6.mxl",
        80,
        refs=(V("organ", seconds=20), V("brass", transpose=-2, tempo=1.1, seconds=16)),
        targets=(V("choir", tempo=0.9, snr_db=20, seconds=15), V("organ", transpose=-2, start=8, seconds=14)),
    ),
    Piece(
        "joplin_maple_leaf_rag",
        "joplin/maple_leaf_rag.mxl",
        92,
        refs=(V("piano", seconds=18),),
        targets=(V("guitar", tempo=0.85, snr_db=20, seconds=15), V("piano", transpose=1, start=8, seconds=13)),
    ),
    # other timbre, same key
    Piece(
        "bwv13.6",
        "bach/bwv13.6.mxl",
        72,
        refs=(V("choir", seconds=18),),
        targets=(V("winds", tempo=1.15, reverb=True, seconds=14),),
    ),
    Piece(
        "bwv144.3",
        "bach/bwv144.3.mxl",
        80,
        refs=(V("brass", seconds=18),),
        targets=(V("organ", start=4, snr_db=25, seconds=14),),
    ),
    Piece(
        "monteverdi_madrigal.3.2",
        "monteverdi/madrigal.3.2.mxl",
        132,
        refs=(V("choir", seconds=20), V("winds", transpose=2, seconds=16)),
        targets=(V("strings", tempo=0.9, start=8, seconds=16),),
    ),
    Piece(
        "handel_lascia_chio_pianga",
        "handel/rinaldo/Lascia_chio_pianga.mxl",
        66,
        refs=(V("strings", seconds=20),),
        targets=(V("flute", reverb=True, seconds=16),),
    ),
    Piece(
        "clara_schumann_polonaise_op1n1",
        "schumann_clara/polonaise_op1n1.mxl",
        100,
        refs=(V("piano", seconds=16),),
        targets=(V("epiano", tempo=1.1, seconds=14),),
    ),
    Piece(
        "verdi_la_donna_e_mobile",
        "verdi/laDonnaEMobile.mxl",
        126,
        refs=(V("brass", seconds=16), V("accordion", transpose=1, tempo=0.9, seconds=18)),
        targets=(V("sax", reverb=True, seconds=15),),
    ),
    # other timbre and other key
    Piece(
        "bwv62.6",
        "bach/bwv62.6.mxl",
        70,
        refs=(V("harpsichord", seconds=18), V("choir", tempo=0.85, reverb=True, seconds=20)),
        targets=(V("piano", transpose=1, tempo=1.2, seconds=12),),
    ),
    Piece(
        "bwv227.7",
        "bach/bwv227.7.mxl",
        76,
        refs=(V("guitar", seconds=16),),
        targets=(V("harp", transpose=3, tempo=0.8, seconds=15),),
    ),
    Piece(
        "corelli_op3no1_grave",
        "corelli/opus3no1/1grave.xml",
        60,
        refs=(V("organ", seconds=18), V("quartet", tempo=1.15, snr_db=25, seconds=16)),
        targets=(V("harpsichord", transpose=-2, seconds=15),),
    ),
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
COMPOSERS = {
    "bach": "Johann Sebastian Bach",
    "beach": "Amy Beach",
    "beethoven": "Ludwig van Beethoven",
    "chopin": "Frederic Chopin",
    "ciconia": "Johannes Ciconia",
    "corelli": "Arcangelo Corelli",
    "cpebach": "Carl Philipp Emanuel Bach",
    "handel": "George Frideric Handel",
    "haydn": "Joseph Haydn",
    "johnson_j_r": "J. Rosamond Johnson",
    "joplin": "Scott Joplin",
    "liliuokalani": "Liliuokalani",
    "luca": "D. Luca",
    "lusitano": "Vicente Lusitano",
    "monteverdi": "Claudio Monteverdi",
    "mozart": "Wolfgang Amadeus Mozart",
    "schoenberg": "Arnold Schoenberg",
    "schumann_clara": "Clara Schumann",
    "schumann_robert": "Robert Schumann",
    "verdi": "Giuseppe Verdi",
    "webern": "Anton Webern",
}

_DISTRACTOR_TIMBRES = (
    "piano",
    "organ",
    "strings",
    "choir",
    "quartet",
    "brass",
    "guitar",
    "harpsichord",
    "winds",
    "epiano",
    "harp",
    "flute",
    "accordion",
    "vibes",
    "sax",
)


def demo_spec() -> tuple[Piece, ...]:
    """All pieces with their versions (queries first, then distractors)."""
    distractors = tuple(
        Piece(
            slug,
            path,
            qpm,
            refs=(V(_DISTRACTOR_TIMBRES[i % len(_DISTRACTOR_TIMBRES)], seconds=float(14 + (i * 5) % 7)),),
        )
        for i, (slug, path, qpm) in enumerate(_DISTRACTOR_SCORES)
    )
    return _QUERIES + distractors


def clips(piece: Piece) -> list[Clip]:
    """The clips of ``piece``: its references, then its targets."""
    return [Clip("refs", piece.slug, v) for v in piece.refs] + [Clip("targets", piece.slug, v) for v in piece.targets]


def check_spec(spec: tuple[Piece, ...]) -> None:
    slugs = [p.slug for p in spec]
    if len(set(slugs)) != len(slugs):
        raise ValueError("duplicate piece slugs in demo spec")
    for p in spec:
        names = [c.relpath for c in clips(p)]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate version names for {p.slug}")
        for c in clips(p):
            if c.version.timbre not in TIMBRES:
                raise ValueError(f"unknown timbre {c.version.timbre!r}")
            if not 10.0 <= c.version.seconds <= 30.0:
                raise ValueError(f"clip length out of range: {c.relpath}")


def piece_to_json(piece: Piece) -> str:
    return json.dumps(asdict(piece), sort_keys=True)


def piece_from_json(text: str) -> Piece:
    d = json.loads(text)
    return Piece(
        slug=d["slug"],
        corpus_path=d["corpus_path"],
        qpm=d["qpm"],
        refs=tuple(Version(**v) for v in d["refs"]),
        targets=tuple(Version(**v) for v in d["targets"]),
    )

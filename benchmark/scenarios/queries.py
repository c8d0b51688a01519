"""Queries derived from the references: a seeded excerpt of each reference under each deformation, cached as .wav.

For every reference (content sha256 ``h``) and deformation ``d`` the query is the file
``<cache>/deformed/<namespace(d)>/<h[:2]>/<h>.wav`` (mono, ``SAMPLE_RATE``, 16-bit PCM), where the namespace hashes
everything that changes the audio: the deformation and its parameters, the versions of the libraries computing it
and decoding the source, the query length, the seed and this module's version. Files are written to a temporary
file and renamed into place (``cache._atomic_write_bytes``), so a killed run leaves no partial query and two runs
may share the folder; a second run (or a second encoder) finds them all and deforms nothing (``n_deformed`` 0,
``n_deformations_cached`` all). The queries are then ordinary target files: decoded, hashed, embedded and cached
by the pipeline like any other.

Excerpts: the query is ``query_seconds`` long, at an offset drawn by ``numpy.random.default_rng([seed, h])``
(so the same for every run, encoder and file order). ``excerpt`` is a second, non-overlapping excerpt of the same
length, made when the track holds two (≥ 2 × the query length; otherwise that query is not made and this is said).
The two offsets are drawn together: two sorted uniform starts in ``[0, L − 2Q]``, the later one shifted by ``Q``,
and which of the two is the query picked at random. A reference shorter than the query length gives a *shortened*
query: the whole reference (never padded with silence, which would change every encoder's statistics); a warning
and the ``scenario_notes`` tag say which.

A deformed query whose peak exceeds full scale (noise added to a loud master, a pitch shift's overshoot) is scaled
down as a whole to a peak of 0.999 rather than clipped (the SNR is unchanged), and counted (``n_queries_rescaled``).
"""

from __future__ import annotations

import io
import logging
import os
import stat
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np

from ..data import AudioDecodeError, AudioFile, Dataset, Failure, content_hash, shown
from ..decoding import decode, decoded_length
from .deformations import Deformation

log = logging.getLogger(__name__)

#: the rate queries are cut, deformed and written at (each encoder resamples them as it does any file)
SAMPLE_RATE = 44100
#: bumped when what a cached query holds changes for reasons no parameter says
QUERIES_VERSION = 1
PEAK = 0.999
DEFORMED_FOLDER = "deformed"


@dataclass(frozen=True)
class Scenario:
    """A robustness scenario's parameters (all logged as params)."""

    deformations: tuple[Deformation, ...]
    query_seconds: float = 20.0
    seed: int = 0
    sample_rate: int = SAMPLE_RATE

    @property
    def query_samples(self) -> int:
        return int(round(self.query_seconds * self.sample_rate))

    def base_identity(self) -> dict:
        return {
            "kind": "deformed-audio",
            "version": QUERIES_VERSION,
            "sample_rate": self.sample_rate,
            "query_seconds": self.query_seconds,
            "seed": self.seed,
            "decoder": {name: version(name) for name in ("soundfile", "soxr")},
        }

    def folder(self, cache_root: Path, deformation: Deformation) -> Path:
        from ..cache import namespace

        return (
            Path(cache_root).expanduser()
            / DEFORMED_FOLDER
            / namespace({**self.base_identity(), **deformation.identity()})
        )


@dataclass
class Prepared:
    """What making the queries did: the bookkeeping metrics and the notes (also a tag)."""

    metrics: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class ScenarioDataset(Dataset):
    """A ``Dataset`` whose targets are made from its references when the run starts (``prepare_targets``), each
    labelled with its deformation (``query_labels``), with one relevant reference: its source."""

    scenario: Scenario | None = None
    cache_root: Path | None = None
    query_labels: dict[str, str] = field(default_factory=dict)  # query key → deformation name
    label_name: str = "deformation"
    label_order: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)

    def prepare_targets(self, workers: int, failures: list[Failure], progress: bool = True) -> dict[str, float]:
        """Make (or find cached) every query, set ``targets``, ``relevance`` and ``query_labels``; a reference that
        cannot be read or decoded is a recorded failure (stage ``queries``) and the others carry on. Returns the
        bookkeeping metrics (``n_deformed``, ``n_deformations_cached``, …)."""
        made = make_queries(self, workers, failures, progress)
        self.notes = made.notes
        return made.metrics


def _source_hashes(dataset: ScenarioDataset, failures: list[Failure]) -> dict[Path, str]:
    """Each reference's sha256 through the pipeline's stat index (which then finds them there)."""
    from ..hash_index import HashIndex

    index = HashIndex(dataset.cache_root)
    hashes = {}
    for ref in dataset.refs:
        digest = index.lookup(ref.path)
        if digest is None:
            try:
                info = os.stat(ref.path)
            except OSError:
                info = None
            try:
                digest = content_hash(ref.path)
            except AudioDecodeError as error:
                failures.append(Failure("reference", ref.key, "queries", f"no queries made from it: {error}"))
                continue
            index.remember(ref.path, digest, info)
        hashes[ref.path] = digest
    index.save()
    return hashes


def _valid(path: Path, sample_rate: int) -> bool:
    """A cached query that can be used: a regular file whose header is a mono WAV at ``sample_rate`` with audio."""
    import soundfile as sf

    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return False
        info = sf.info(os.fsencode(path))
    except Exception:  # noqa: BLE001 - absent or unreadable: made again
        return False
    return info.samplerate == sample_rate and info.channels == 1 and info.frames > 0


def _write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> bool:
    """Write atomically as 16-bit PCM; returns whether the audio had to be scaled down to fit full scale."""
    import soundfile as sf

    from ..cache import _atomic_write_bytes

    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    rescaled = peak > PEAK
    if rescaled:
        audio = audio * np.float32(PEAK / peak)
    buffer = io.BytesIO()
    sf.write(buffer, audio, sample_rate, format="WAV", subtype="PCM_16")
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write_bytes(path, buffer.getvalue())
    return rescaled


def offsets(length: int, query: int, seed: int, digest: str) -> tuple[int, int | None]:
    """(query offset, other excerpt's offset or None) for a track of ``length`` samples; see the module doc."""
    rng = np.random.default_rng([seed, int(digest[:15], 16)])
    if length < 2 * query:
        return (int(rng.integers(0, length - query + 1)) if length > query else 0), None
    first, second = sorted(int(v) for v in rng.integers(0, length - 2 * query + 1, size=2))
    second += query
    return (first, second) if rng.random() < 0.5 else (second, first)


def _noise_seed(seed: int, digest: str, name: str) -> int:
    return int(np.random.SeedSequence([seed, int(digest[:15], 16), zlib.crc32(name.encode())]).generate_state(1)[0])


@dataclass
class _RefOutcome:
    deformed: int = 0
    cached: int = 0
    rescaled: int = 0
    shortened: bool = False
    excerpt_skipped: bool = False
    made: dict[str, Path] = field(default_factory=dict)  # deformation → query file
    failure: Failure | None = None


def _one_reference(dataset: ScenarioDataset, ref: AudioFile, digest: str) -> _RefOutcome:
    scenario = dataset.scenario
    q = scenario.query_samples
    out = _RefOutcome()
    paths = {
        d.name: scenario.folder(dataset.cache_root, d) / digest[:2] / f"{digest}.wav" for d in scenario.deformations
    }
    length = decoded_length(ref.path, scenario.sample_rate)  # from the header: a warm run decodes nothing
    todo = [d for d in scenario.deformations if not _valid(paths[d.name], scenario.sample_rate)]
    if length is not None and length < 2 * q:
        todo = [d for d in todo if d.kind != "excerpt"]  # the track holds no second excerpt
    out.cached = sum(1 for d in scenario.deformations if d not in todo and paths[d.name].exists())
    out.made = {d.name: paths[d.name] for d in scenario.deformations if d not in todo and paths[d.name].exists()}
    if todo:
        try:
            audio = decode(ref.path, scenario.sample_rate)
        except AudioDecodeError as error:
            out.failure = Failure("reference", ref.key, "queries", f"no queries made from it: {error}")
            out.made = {}
            return out
        length = len(audio)
        start, other = offsets(length, q, scenario.seed, digest)
        excerpt = audio[start : start + q]
        for d in todo:
            if d.kind == "excerpt":
                if other is None:
                    continue
                source = audio[other : other + q]
            else:
                source = excerpt
            deformed = d.apply(source, scenario.sample_rate, _noise_seed(scenario.seed, digest, d.name))
            out.rescaled += _write_wav(paths[d.name], deformed, scenario.sample_rate)
            out.deformed += 1
            out.made[d.name] = paths[d.name]
        del audio
    out.shortened = length is not None and length < q
    out.excerpt_skipped = "excerpt" in paths and "excerpt" not in out.made
    return out


def make_queries(dataset: ScenarioDataset, workers: int, failures: list[Failure], progress: bool) -> Prepared:
    """See ``ScenarioDataset.prepare_targets``. References are worked on in ``workers`` threads (decode and Rubber
    Band release the GIL); results are gathered in reference order."""
    from ..progress import bar as progress_bar

    scenario = dataset.scenario
    hashes = _source_hashes(dataset, failures)
    refs = [ref for ref in dataset.refs if ref.path in hashes]
    bar = progress_bar(total=len(refs), desc="queries (deform)", unit="ref", disable=not progress, leave=False)
    outcomes: list[_RefOutcome] = []
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for outcome in pool.map(lambda ref: _one_reference(dataset, ref, hashes[ref.path]), refs):
            outcomes.append(outcome)
            bar.update()
    bar.close()

    targets: list[AudioFile] = []
    relevance: dict[str, dict[str, float]] = {}
    labels: dict[str, str] = {}
    for d in scenario.deformations:  # queries grouped by deformation, references in order within each
        for ref, outcome in zip(refs, outcomes):
            path = outcome.made.get(d.name)
            if path is None:
                continue
            key = f"{d.name}/{ref.key}"
            targets.append(AudioFile(path=path, key=key))
            relevance[key] = {ref.key: 1.0}
            labels[key] = d.name
    dataset.targets, dataset.relevance, dataset.query_labels = targets, relevance, labels
    dataset.label_order = tuple(d.name for d in scenario.deformations)

    failures.extend(o.failure for o in outcomes if o.failure is not None)
    notes = []
    shortened = [ref.key for ref, o in zip(refs, outcomes) if o.shortened and o.failure is None]
    if shortened:
        notes.append(
            f"{len(shortened)} reference(s) shorter than the query length ({scenario.query_seconds:g} s) were used "
            f"whole (shortened queries, not padded): {', '.join(shown(k) for k in shortened)}"
        )
    skipped = [ref.key for ref, o in zip(refs, outcomes) if o.excerpt_skipped and o.failure is None]
    if skipped:
        notes.append(
            f"no 'excerpt' query for {len(skipped)} reference(s) shorter than twice the query length "
            f"({2 * scenario.query_seconds:g} s): {', '.join(shown(k) for k in skipped)}"
        )
    for note in notes:
        log.warning("%s", note)
    metrics = {
        "n_deformed": sum(o.deformed for o in outcomes),
        "n_deformations_cached": sum(o.cached for o in outcomes),
        "n_queries": len(targets),
        "n_refs_shorter_than_query": len(shortened),
        "n_excerpt_skipped": len(skipped),
        "n_queries_rescaled": sum(o.rescaled for o in outcomes),
        "n_refs_without_queries": len(dataset.refs) - sum(1 for o in outcomes if o.made),
    }
    return Prepared(metrics=metrics, notes=notes)

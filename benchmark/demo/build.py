"""The atomic, deterministic build of the demo set: ground truth, manifest, README, reuse.

The build is deterministic (same package versions -> byte-identical WAV files), takes about
10 s of CPU (two worker processes by default), is written into a temporary sibling directory and renamed into
place at the end, and is reused once complete (``manifest.json`` is written last and marks completeness).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .render import PEAK_DBFS, SAMPLE_RATE, render_in_subprocesses, render_piece
from .spec import BUILDER_VERSION, COMPOSERS, TIMBRES, Clip, Piece, check_spec, clips, demo_spec

DEMO_SUBDIR = ("demo", "v1")
MANIFEST_NAME = "manifest.json"
GROUND_TRUTH_NAME = "ground_truth.csv"
README_NAME = "README.txt"

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
    def at(cls, root: Path) -> DemoSet:
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
# Ground truth and orchestration
# --------------------------------------------------------------------------------------------


def _ground_truth(spec: Iterable[Piece]) -> list[tuple[str, str, int]]:
    rows = []
    for piece in spec:
        refs = [Clip("refs", piece.slug, v).relpath.split("/", 1)[1] for v in piece.refs]
        for v in piece.targets:
            target = Clip("targets", piece.slug, v).relpath.split("/", 1)[1]
            rows.extend((target, ref, 1) for ref in refs)
    return sorted(rows)


def _build_into(root: Path, progress: bool, workers: int | None) -> None:
    spec = demo_spec()
    check_spec(spec)
    (root / "refs").mkdir()
    (root / "targets").mkdir()
    n_files = sum(len(clips(p)) for p in spec)
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
                done(render_piece(piece, str(root)))
        else:
            render_in_subprocesses(spec, root, workers, done)
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
        print(
            f"musicbench demo: {manifest['n_refs']} refs, {manifest['n_targets']} targets rendered in {build_s:.1f} s",
            file=sys.stderr,
        )


def _package_versions() -> dict[str, str]:
    from encoders.runtime import package_version

    names = ("music21", "pretty_midi", "mido", "tinysoundfont", "numpy", "soundfile")
    return {name: package_version(name) or "?" for name in names}


def _remove_stale_tmp_dirs(dest: Path) -> None:
    """Remove leftovers of killed builds (``.NAME.tmp-PID-*`` / ``.NAME.old-PID-*`` whose PID is gone)."""
    for prefix in (f".{dest.name}.tmp-", f".{dest.name}.old-"):
        for p in dest.parent.glob(prefix + "*"):
            try:
                pid = int(p.name[len(prefix) :].split("-", 1)[0])
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
    """The set's README.txt: the package data file README.txt filled in."""
    n_refs = sum(len(p.refs) for p in spec)
    n_targets = sum(len(p.targets) for p in spec)
    n_queries = sum(1 for p in spec if p.targets)
    lines = []
    for p, info in zip(spec, pieces):
        lines.append(f"  {p.slug}{'  (query)' if p.targets else ''}")
        lines.append(f"      music21 corpus: {p.corpus_path}")
        composer = COMPOSERS.get(p.corpus_path.split("/", 1)[0])
        if composer:
            lines.append(f"      composer: {composer}")
        lines.append(f"      notice in the encoding: {info.get('copyright') or '(none)'}")
    piece_text = "\n".join(lines)
    timbres = "\n".join(f"  {k:12s} {', '.join(str(x) for x in v)}" for k, v in TIMBRES.items())
    template = resources.files(__package__).joinpath(README_NAME).read_text(encoding="utf-8")
    return template.format(
        builder_version=BUILDER_VERSION,
        n_refs=n_refs,
        n_queries=n_queries,
        n_distractors=len(spec) - n_queries,
        n_targets=n_targets,
        n_gt_rows=len(gt),
        sample_rate=SAMPLE_RATE,
        peak_dbfs=PEAK_DBFS,
        timbres=timbres,
        pieces=piece_text,
    )

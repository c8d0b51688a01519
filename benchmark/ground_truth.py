"""Reading the ground-truth CSV: ``target,reference[,relevance]`` rows → target key → {reference key: relevance}.

Everything a row can get wrong is found here, before any audio is decoded, and named with its row number:

* **Text.** UTF-8 (a byte-order mark is fine) or UTF-16 with a byte-order mark. Anything else (a binary file, a
  spreadsheet) is refused. Header names may carry spaces and any case (`` Target , Reference ``).
* **Rows.** A row without a target or a reference is refused. Blank lines are skipped.
* **Relevance.** Optional, 1 when absent or empty; it must be a finite number ≥ 0 (0 = judged not relevant, larger =
  more relevant, as in trec_eval's graded qrels). ``-1``, ``nan``, ``inf`` or ``1e400`` are refused.
* **Names.** A name is first matched exactly to a file's path relative to its folder (as given, then with
  surrounding spaces removed and ``\\`` read as ``/``). Failing that, a unique file name, then a unique stem, is
  accepted (``a4`` or ``a4.wav`` for ``piano/a4.wav``); when the entry was a path that names no file, the fallback
  is reported (``other/r00.wav`` matched by name to ``r00.wav``). An ambiguous or unknown name is refused.
* **Duplicates.** The same (target, reference) pair on several rows keeps the **highest** relevance, whatever the
  order; conflicting duplicates are reported.
* **Self-pairs.** A row whose target and reference are the same file (same path, symlink or hard link; see
  ``data.file_identity``) is dropped with a warning: the file is excluded from its own results, so it could never be
  retrieved, and counting it as relevant would lower every metric of that query. The count is logged.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from .data import AudioFile, DatasetError, file_identity

log = logging.getLogger(__name__)

COLUMNS = ("target", "reference", "relevance")
#: how many reported items a warning lists before it says "… and N more"
SHOWN = 5


@dataclass
class GroundTruth:
    """The relevance judgements of a dataset and what reading them found."""

    relevance: dict[str, dict[str, float]]  # target key → {reference key: relevance > 0}
    n_rows: int = 0
    self_pairs: list[str] = field(default_factory=list)  # "row 7: a.wav" — dropped
    fallback_matches: list[str] = field(default_factory=list)  # "row 3: 'other/r00.wav' → r00.wav (by file name)"
    conflicts: list[str] = field(default_factory=list)  # "rows 2, 5: t.wav → r.wav relevance 3, 1 (kept 3)"

    def notes(self) -> list[str]:
        """One line per kind of finding, for the log and the run's tags."""
        out = []
        for what, items in (
            ("self-pairs dropped (a file is never retrieved for itself)", self.self_pairs),
            ("names matched by a fallback rule, not exactly", self.fallback_matches),
            ("duplicate pairs with different relevance (the highest kept)", self.conflicts),
        ):
            if items:
                more = f" … and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
                out.append(f"{len(items)} {what}: {'; '.join(items[:SHOWN])}{more}")
        return out


def read_ground_truth(csv_path: str | os.PathLike, refs: list[AudioFile], targets: list[AudioFile]) -> GroundTruth:
    """Read and check the ground truth (see the module's docstring for every rule); ``DatasetError`` on a bad file."""
    csv_path = Path(csv_path).expanduser()
    if not csv_path.is_file():
        raise DatasetError(f"ground-truth file {csv_path} does not exist")
    rows = csv.reader(io.StringIO(_text(csv_path), newline=""))
    header = [name.strip().lower() for name in next(rows, [])]
    missing = [name for name in COLUMNS[:2] if name not in header]
    if missing:
        raise DatasetError(
            f"{csv_path}: needs columns target,reference[,relevance] in its header row; "
            f"missing {', '.join(missing)} (found: {', '.join(header) or 'an empty file'})"
        )
    column = {name: header.index(name) for name in COLUMNS if name in header}
    target_names, ref_names = _Names(targets, "target", csv_path), _Names(refs, "reference", csv_path)
    found = GroundTruth({})
    judged: dict[tuple[str, str], tuple[float, list[int], list[float]]] = {}
    for line, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        found.n_rows += 1
        cells = {name: row[index].strip() if index < len(row) else "" for name, index in column.items()}
        for name in COLUMNS[:2]:
            if not cells[name]:
                raise DatasetError(f"{csv_path}:{line}: row has no {name} ({_shown_row(row)})")
        target = target_names.match(row[column["target"]], line, found)
        reference = ref_names.match(row[column["reference"]], line, found)
        value = _relevance(cells.get("relevance", ""), csv_path, line)
        if file_identity(target_names.path[target]) == file_identity(ref_names.path[reference]):
            found.self_pairs.append(f"row {line}: {target}" + (f" ~ {reference}" if reference != target else ""))
            continue
        best, lines, values = judged.get((target, reference), (value, [], []))
        judged[(target, reference)] = (max(best, value), [*lines, line], [*values, value])
    for (target, reference), (value, lines, values) in judged.items():
        if len(set(values)) > 1:
            found.conflicts.append(
                f"rows {', '.join(map(str, lines))}: {target} → {reference} relevance "
                f"{', '.join(f'{v:g}' for v in values)} (kept {value:g})"
            )
        if value > 0:
            found.relevance.setdefault(target, {})[reference] = value
    for note in found.notes():
        log.warning("%s: %s", csv_path, note)
    if not found.relevance:
        raise DatasetError(f"{csv_path}: no relevant (target, reference) pairs")
    return found


def _text(csv_path: Path) -> str:
    data = csv_path.read_bytes()
    encodings = ["utf-16"] if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else ["utf-8-sig"]
    for encoding in encodings:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as error:
            line = data[: error.start].count(b"\n") + 1
            raise DatasetError(
                f"{csv_path}:{line}: not {encoding.removesuffix('-sig').upper()} text (byte {error.start}); save the "
                "ground truth as a UTF-8 CSV with columns target,reference[,relevance]"
            ) from None
        if "\x00" in text:
            raise DatasetError(f"{csv_path}: holds NUL bytes; is it a binary file? Expected a UTF-8 CSV")
        return text
    raise AssertionError("unreachable")


def _relevance(text: str, csv_path: Path, line: int) -> float:
    if not text:
        return 1.0
    try:
        value = float(text)
    except ValueError:
        raise DatasetError(f"{csv_path}:{line}: relevance '{text}' is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise DatasetError(
            f"{csv_path}:{line}: relevance '{text}' must be a finite number ≥ 0 "
            "(0 = not relevant, 1 = relevant, larger = more relevant)"
        )
    return value


def _shown_row(row: list[str]) -> str:
    return ",".join(row) if row else "an empty row"


class _Names:
    """Ground-truth names → file keys of one folder: exact first, then the reported fallbacks."""

    def __init__(self, files: list[AudioFile], role: str, csv_path: Path):
        self.role, self.csv_path = role, csv_path
        self.path = {f.key: f.path for f in files}
        self.by_name: dict[str, list[str]] = {}
        self.by_stem: dict[str, list[str]] = {}
        for key in self.path:
            self.by_name.setdefault(Path(key).name, []).append(key)
            self.by_stem.setdefault(Path(key).stem, []).append(key)

    def match(self, raw: str, line: int, found: GroundTruth) -> str:
        cleaned = raw.strip().replace("\\", "/")
        for candidate in (raw, cleaned):
            if candidate in self.path:
                return candidate
        for rule, index, part in (
            ("file name", self.by_name, Path(cleaned).name),
            ("stem", self.by_stem, Path(cleaned).stem),
        ):
            matches = index.get(part, [])
            if len(matches) > 1:
                raise DatasetError(
                    f"{self.csv_path}:{line}: {self.role} '{raw}' is ambiguous: matches {', '.join(matches[:SHOWN])}"
                )
            if matches:
                if "/" in cleaned:  # a path that names no file: reported (a bare name or stem is the documented form)
                    found.fallback_matches.append(f"row {line}: {self.role} '{raw}' → {matches[0]} (by {rule})")
                return matches[0]
        raise DatasetError(f"{self.csv_path}:{line}: {self.role} '{raw}' is not a file in the {self.role}s folder")

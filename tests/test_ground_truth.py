"""The ground-truth reader (issue 13, items 1, 4, 5, 6, 9 and 12): every bad row is named before any work."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from benchmark.data import DatasetError, discover, load_dataset
from benchmark.ground_truth import read_ground_truth


@pytest.fixture
def folders(tmp_path):
    """refs r00..r02 and targets t00, t01 (tiny silent-ish WAVs: the reader never decodes them)."""
    refs, targets = tmp_path / "refs", tmp_path / "targets"
    for folder, names in ((refs, ("r00", "r01", "r02")), (targets, ("t00", "t01"))):
        folder.mkdir()
        for name in names:
            sf.write(folder / f"{name}.wav", np.full(100, 0.1, dtype=np.float32), 8000)
    return tmp_path, discover(refs, "reference"), discover(targets, "target")


def _read(folders, text: str | bytes):
    root, refs, targets = folders
    path = root / "gt.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return read_ground_truth(path, refs, targets)


def test_self_pair_is_dropped_counted_and_warned(tmp_path, caplog):
    """Item 1: with overlapping folders, a row pairing a file with itself no longer counts as relevant."""
    shared = tmp_path / "music"
    shared.mkdir()
    for name in ("a", "b", "c"):
        sf.write(shared / f"{name}.wav", np.full(100, 0.1, dtype=np.float32), 8000)
    gt = tmp_path / "gt.csv"
    gt.write_text("target,reference\na.wav,a.wav\na.wav,b.wav\n")
    ds = load_dataset(shared, shared, gt)
    assert ds.relevance == {"a.wav": {"b.wav": 1.0}}  # was {"a.wav", "b.wav"}: recall@5 and AP 0.5, not 1.0
    assert ds.ground_truth.self_pairs == ["row 2: a.wav"]
    assert "1 self-pairs dropped" in caplog.text


def test_hard_link_of_a_reference_is_the_same_file(tmp_path):
    """Item 4: a hard link (like a symlink) of a reference used as a target is excluded from its own results, and a
    ground-truth row pairing them is a self-pair; a byte-identical copy is a different file."""
    refs, targets = tmp_path / "refs", tmp_path / "targets"
    refs.mkdir()
    targets.mkdir()
    sf.write(refs / "r.wav", np.full(100, 0.1, dtype=np.float32), 8000)
    sf.write(refs / "other.wav", np.full(100, 0.2, dtype=np.float32), 8000)
    os.link(refs / "r.wav", targets / "hard.wav")
    os.symlink(refs / "r.wav", targets / "soft.wav")
    (targets / "copy.wav").write_bytes((refs / "r.wav").read_bytes())
    gt = tmp_path / "gt.csv"
    gt.write_text("target,reference\nhard.wav,r.wav\nhard.wav,other.wav\n")
    ds = load_dataset(refs, targets, gt)
    keys = [t.key for t in ds.targets]
    r_index = [f.key for f in ds.refs].index("r.wav")
    excluded = dict(zip(keys, ds.self_matches()))
    assert excluded["hard.wav"] == {r_index}  # was set(): it retrieved itself at similarity 1.0
    assert excluded["soft.wav"] == {r_index}
    assert excluded["copy.wav"] == set()  # documented: a copy is another file
    assert ds.relevance == {"hard.wav": {"other.wav": 1.0}}


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "1e400", "-inf"])
def test_non_finite_or_negative_relevance_is_refused_with_its_row(folders, value):
    """Items 5 and 9: -1 and nan were dropped silently; inf / 1e400 crashed IR scoring after all the embedding."""
    with pytest.raises(DatasetError, match=r"gt.csv:3: relevance .* must be a finite number ≥ 0"):
        _read(folders, f"target,reference,relevance\nt00,r00,1\nt00,r01,{value}\n")


@pytest.mark.parametrize("first, second", [(1, 0), (0, 1), (3, 1), (1, 3)])
def test_duplicates_keep_the_highest_relevance_whatever_the_order(folders, first, second, caplog):
    """Item 5: 1-then-0 stayed 1 while 3-then-1 became 1; one rule now: the highest relevance wins."""
    found = _read(folders, f"target,reference,relevance\nt00,r00,{first}\nt00,r00,{second}\n")
    assert found.relevance == {"t00.wav": {"r00.wav": float(max(first, second))}}
    assert found.conflicts == [f"rows 2, 3: t00.wav → r00.wav relevance {first}, {second} (kept {max(first, second)})"]
    assert "duplicate pairs with different relevance" in caplog.text


def test_a_path_naming_no_file_is_matched_by_name_and_reported(folders, caplog):
    """Item 6: ``other/r00.wav`` was matched to ``r00.wav`` without a word."""
    found = _read(folders, "target,reference\nt00,other/r00.wav\nt01,r01\n")
    assert found.relevance == {"t00.wav": {"r00.wav": 1.0}, "t01.wav": {"r01.wav": 1.0}}
    assert found.fallback_matches == ["row 2: reference 'other/r00.wav' → r00.wav (by file name)"]  # a stem is not
    assert "matched by a fallback rule" in caplog.text


def test_names_with_a_leading_space_or_a_backslash_can_be_named(tmp_path):
    """Item 6: such files could not be named in the ground truth at all (names were stripped and ``\\`` rewritten)."""
    refs, targets = tmp_path / "refs", tmp_path / "targets"
    refs.mkdir()
    targets.mkdir()
    for path in (refs / " lead.wav", refs / "back\\slash.wav", refs / "lead.wav", targets / "t.wav"):
        sf.write(path, np.full(100, 0.1, dtype=np.float32), 8000)
    gt = tmp_path / "gt.csv"
    gt.write_text('target,reference\nt.wav," lead.wav"\nt.wav,back\\slash.wav\n')
    ds = load_dataset(refs, targets, gt)
    assert ds.relevance == {"t.wav": {" lead.wav": 1.0, "back\\slash.wav": 1.0}}
    assert ds.ground_truth.fallback_matches == []


@pytest.mark.parametrize(
    "text, message",
    [
        ("target,reference\nt00\n", r"gt.csv:2: row has no reference \(t00\)"),  # was AttributeError
        ("target,reference\n,r00\n", r"gt.csv:2: row has no target"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe binary", r"gt.csv:\d+: not UTF-8 text"),  # was UnicodeDecodeError
        (b"target,reference\nt00,r00\n\xff\xfe\x00", r"gt.csv:3: not UTF-8 text"),
        ("query,ref\nt00,r00\n", r"needs columns target,reference\[,relevance\].*missing target, reference"),
        ("", r"needs columns .*found: an empty file"),
        ("target,reference\nt00,r00\nt00,r00\x00\n", r"NUL bytes"),
    ],
    ids=["short-row", "empty-target", "binary", "bad-byte", "header", "empty", "nul"],
)
def test_unreadable_rows_and_files_are_named(folders, text, message):
    with pytest.raises(DatasetError, match=message):
        _read(folders, text)


def test_utf16_with_a_bom_and_a_header_with_spaces_are_read(folders):
    """Item 12: a header with spaces around the names was refused; UTF-16 (Excel's "Unicode text") failed."""
    text = " Target , Reference , Relevance \nt00,r00,2\n"
    assert _read(folders, text).relevance == {"t00.wav": {"r00.wav": 2.0}}
    assert _read(folders, text.encode("utf-16")).relevance == {"t00.wav": {"r00.wav": 2.0}}


def test_blank_lines_and_zero_relevance_rows(folders):
    found = _read(folders, "target,reference,relevance\n\nt00,r00,0\nt00,r01,\n,\n")
    assert found.relevance == {"t00.wav": {"r01.wav": 1.0}}  # 0 = judged not relevant; empty = 1
    assert found.n_rows == 2

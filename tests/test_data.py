import os

import numpy as np
import pytest
import soundfile as sf

from benchmark import decoding
from benchmark.data import AudioDecodeError, DatasetError, discover, load_dataset
from benchmark.decoding import decode
from benchmark.ground_truth import read_ground_truth
from encoders.base import WindowPolicy


def test_discover_is_recursive_sorted_and_skips_non_audio(tmp_path):
    (tmp_path / "b" / "deep").mkdir(parents=True)
    for name in ("b/deep/z.flac", "a.wav", "b/c.ogg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [f.key for f in discover(tmp_path, "reference")] == ["a.wav", "b/c.ogg", "b/deep/z.flac"]


def test_missing_and_empty_folders_fail_with_the_folder_named(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        discover(tmp_path / "nope", "reference")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no audio files found in target folder .*empty"):
        discover(tmp_path / "empty", "target")


def test_decode_mixes_to_mono_and_resamples(tmp_path):
    sr = 44100
    stereo = np.stack([np.ones(sr), -np.ones(sr) * 0.5], axis=1).astype(np.float32) * 0.5
    sf.write(tmp_path / "s.wav", stereo, sr, subtype="FLOAT")
    mono = decode(tmp_path / "s.wav", sr)
    np.testing.assert_allclose(mono, 0.125, atol=1e-6)
    resampled = decode(tmp_path / "s.wav", 22050)
    assert resampled.dtype == np.float32 and abs(len(resampled) - 22050) <= 1


def test_decode_errors_name_the_file(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "junk.wav").write_bytes(b"this is not audio" * 10)
    with pytest.raises(AudioDecodeError, match="empty.wav: empty file"):
        decode(tmp_path / "empty.wav", 22050)
    with pytest.raises(AudioDecodeError, match="junk.wav: not decodable"):
        decode(tmp_path / "junk.wav", 22050)


def test_ground_truth_matches_by_path_name_or_stem(tiny_dataset):
    ds = load_dataset(tiny_dataset["refs"], tiny_dataset["targets"], tiny_dataset["ground_truth"])
    assert ds.relevance == {"a4_noisy.wav": {"a4.wav": 1.0}, "e5_noisy.wav": {"e5.wav": 1.0}}
    gt = tiny_dataset["root"] / "stems.csv"
    gt.write_text("target,reference,relevance\na4_noisy,a4,2\n")
    assert read_ground_truth(gt, ds.refs, ds.targets).relevance == {"a4_noisy.wav": {"a4.wav": 2.0}}
    gt.write_text("target,reference\na4_noisy,b7\n")
    with pytest.raises(DatasetError, match="'b7' is not a file"):
        read_ground_truth(gt, ds.refs, ds.targets)
    gt.write_text("query,ref\n")
    with pytest.raises(DatasetError, match="needs columns"):
        read_ground_truth(gt, ds.refs, ds.targets)


def test_self_matches_found_when_folders_overlap(tiny_dataset):
    ds = load_dataset(tiny_dataset["refs"], tiny_dataset["refs"])
    assert ds.self_matches() == [{0}, {1}, {2}, {3}]


@pytest.mark.parametrize("seconds,expected", [(25.0, [10.0, 10.0, 10.0]), (10.0, [10.0]), (3.0, [10.0])])
def test_segment_pads_last_window(seconds, expected):
    windows = WindowPolicy(10.0, 10.0, pad_last=True).segment(np.ones(int(seconds * 100), dtype=np.float32), 100)
    assert [len(w) / 100 for w in windows] == expected
    assert windows[-1][-1] == (1.0 if seconds % 10 == 0 else 0.0)


def test_segment_whole_file_and_overlap_and_short_tail():
    audio = np.arange(2500, dtype=np.float32)
    assert len(WindowPolicy().segment(audio, 100)) == 1
    overlapping = WindowPolicy(10.0, 5.0, pad_last=False).segment(audio, 100)
    assert [len(w) for w in overlapping] == [1000, 1000, 1000, 1000]  # starts 0, 5, 10, 15 s; last reaches the end
    assert overlapping[-1][-1] == 2499
    padded = WindowPolicy(min_seconds=1.0).segment(np.ones(10, dtype=np.float32), 100)
    assert len(padded[0]) == 100


def test_symlinked_subfolders_are_followed_and_loops_read_once(tmp_path, caplog):
    """Issue 13 item 17: a symlinked subfolder was skipped without a word; now it is read, and a link back to a
    folder already read (a loop) is skipped with a warning naming it."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    sf.write(elsewhere / "linked.wav", np.zeros(100, dtype=np.float32), 8000)
    refs = tmp_path / "refs"
    refs.mkdir()
    sf.write(refs / "own.wav", np.zeros(100, dtype=np.float32), 8000)
    os.symlink(elsewhere, refs / "more")
    os.symlink(".", refs / "loop")
    assert [f.key for f in discover(refs, "reference")] == ["own.wav", "more/linked.wav"]
    assert f"skipped {refs / 'loop'}, a link to a folder already read" in caplog.text


# --- decode into one buffer equals the previous decode (blocks, then their concatenation) -------------------------


def _concatenating_decode(path, sample_rate):
    """The previous ``_stream_mono``: each block mono-mixed and resampled, all blocks kept, then concatenated."""
    import soxr

    with sf.SoundFile(path) as handle:
        rate = int(handle.samplerate)
        stream = (
            soxr.ResampleStream(rate, sample_rate, 1, dtype="float32", quality="HQ") if rate != sample_rate else None
        )
        pieces = []
        while True:
            block = handle.read(decoding.BLOCK_FRAMES, dtype="float32", always_2d=True)
            last = len(block) < decoding.BLOCK_FRAMES
            mono = decoding._to_mono(block)
            pieces.append(stream.resample_chunk(mono, last=last) if stream is not None else mono)
            if last:
                break
    return np.concatenate(pieces) if len(pieces) > 1 else pieces[0]


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("file_rate, sample_rate", [(44100, 44100), (22050, 44100), (48000, 44100), (44100, 48000)])
def test_decode_into_one_buffer_equals_the_concatenating_decode(
    tmp_path, monkeypatch, channels, file_rate, sample_rate
):
    import soxr
    from audio_factory import melody

    # ~47 s of audio in blocks of 2**16 frames: 30-odd blocks, the last one partial
    y = melody(47.3, file_rate, seed=channels)
    audio = np.stack([y, np.roll(y, 11) * 0.7], axis=1) if channels == 2 else y
    path = tmp_path / "long.wav"
    sf.write(path, audio, file_rate, subtype="PCM_16")
    monkeypatch.setattr(decoding, "BLOCK_FRAMES", 1 << 16)
    expected = _concatenating_decode(path, sample_rate)
    got = decode(path, sample_rate)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, expected)
    blocks = list(decoding.decode_blocks(path, sample_rate))  # the streaming form: the same samples, in pieces
    assert len(blocks) > 10 and all(b.dtype == np.float32 for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks), expected)
    one_shot = soxr.resample(y, file_rate, sample_rate, quality="HQ") if file_rate != sample_rate else y
    assert len(got) == len(one_shot)
    # a header that under-states the length (mp3 estimates) grows the buffer; one that over-states it is trimmed
    for wrong in (lambda n, a, b: 1000, lambda n, a, b: 10 * n):
        with monkeypatch.context() as patch:
            patch.setattr(decoding, "_expected_samples", wrong)
            np.testing.assert_array_equal(decode(path, sample_rate), expected)


def test_decode_of_a_partial_last_block_and_a_tiny_file(tmp_path, monkeypatch):
    monkeypatch.setattr(decoding, "BLOCK_FRAMES", 1 << 12)
    for n in (1, 4095, 4096, 4097, 3 * 4096):
        path = tmp_path / f"n{n}.wav"
        sf.write(path, np.linspace(-0.5, 0.5, n, dtype=np.float32), 22050, subtype="FLOAT")
        for rate in (22050, 44100):
            np.testing.assert_array_equal(decode(path, rate), _concatenating_decode(path, rate))


def test_decode_blocks_reports_a_truncated_file_at_its_end(tmp_path, monkeypatch):
    monkeypatch.setattr(decoding, "BLOCK_FRAMES", 1 << 12)
    path = tmp_path / "cut.wav"
    sf.write(path, np.zeros(40000, np.float32) + 0.1, 22050, subtype="PCM_16")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 20000])  # the header still promises 40000 frames
    with pytest.raises(AudioDecodeError, match="cut.wav: truncated"):
        decode(path, 22050)
    with pytest.raises(AudioDecodeError, match="cut.wav: truncated"):
        list(decoding.decode_blocks(path, 22050))
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioDecodeError, match="empty file"):
        next(decoding.decode_blocks(tmp_path / "empty.wav", 22050))


def test_decoded_length_comes_from_the_header_and_never_raises(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, np.zeros((44100 * 3 + 7, 2), np.float32), 44100, subtype="PCM_16")
    for rate in (44100, 48000, 22050):
        assert decoding.decoded_length(path, rate) == len(decode(path, rate))
    (tmp_path / "junk.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio")
    os.mkfifo(tmp_path / "fifo.wav")  # opening it would block
    for name in ("junk.wav", "missing.wav", "fifo.wav"):
        assert decoding.decoded_length(tmp_path / name, 48000) is None

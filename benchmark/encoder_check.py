"""The encoder check: what ``musicbench check-encoder`` runs and what ``tests/test_encoder_contract.py`` asserts, in
one place, so the two never diverge.

``check_encoder(name, options)`` takes any encoder name the harness takes (built-in, plug-in, ``hf:…``,
``package.module:Class``) and returns a ``CheckReport``: one ``CheckResult`` per check, in this order:

* ``protocol`` — the name resolves to an ``encoders.base.Encoder`` subclass whose ``card`` is a ``ModelCard`` with
  a positive integer sample rate and dim and a ``WindowPolicy`` (``registry.protocol_problems``);
* ``model_card`` — the card says what it is: a name, a description, a licence and what the embedding captures;
* ``build`` — the encoder builds with these options (weights found, package installed); the checks below need it;
* ``card_matches`` — the built encoder's sample rate and dim are its class card's;
* the library's invariants on synthetic audio (``encoders.contract.run_checks``, which documents them):
  ``output_shape_dtype``, ``finite``, ``deterministic``, ``input_untouched``, ``batch_equals_single``,
  ``sliced_batches``, ``shorter_than_window``, ``source_sample_rates`` (8 / 22.05 / 44.1 / 48 kHz), ``silence``;
* the harness's own path on files (decode → window → embed → pool: ``benchmark.embedding.embed_files``):
  ``decoded_files`` — a 8 kHz WAV, a 22.05 kHz WAV, a 44.1 kHz stereo WAV, a 48 kHz FLAC and a 0.2 s clip at
  16 kHz each give one finite float32 ``(dim,)`` embedding, the same on a second pass; ``stereo`` — a stereo file
  whose two channels are one signal embeds as the mono file of that signal (the harness downmixes to the mean);
  ``policy_windows`` — the window policy's segments of two clips embed in one call to finite ``(n, dim)``;
* ``speed`` — audio seconds embedded per wall-clock second: warm (one clip after a warm-up call; the value), and
  over the library checks with first calls (imports, JIT) included: a measurement, never a failure.

A check that fails is reported with what it saw; a check that raises is a failure naming the exception; nothing
here raises for a broken encoder (an unknown plain name raises ``UnknownEncoder``: nothing to check).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from encoders import registry
from encoders.base import Encoder, EncoderUnavailable
from encoders.contract import CheckResult, _within_tolerance, attempt, measure_speed, music, run_checks

#: every check's name, in report order (``speed`` last)
CHECKS = (
    "protocol",
    "model_card",
    "build",
    "card_matches",
    "output_shape_dtype",
    "finite",
    "deterministic",
    "input_untouched",
    "batch_equals_single",
    "sliced_batches",
    "shorter_than_window",
    "source_sample_rates",
    "silence",
    "decoded_files",
    "stereo",
    "policy_windows",
    "speed",
)

#: the harness-path files: name → (sample rate, channels, seconds)
HARNESS_FILES = {
    "sr8000.wav": (8000, 1, 1.5),
    "sr22050.wav": (22050, 1, 1.5),
    "sr44100_stereo.wav": (44100, 2, 1.5),
    "sr48000.flac": (48000, 1, 1.5),
    "short.wav": (16000, 1, 0.2),
}


@dataclass
class CheckReport:
    """The outcome of ``check_encoder``: the results in ``CHECKS`` order (checks not reached are absent)."""

    name: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def failures(self) -> list[CheckResult]:
        return [result for result in self.results if not result.passed]

    @property
    def ok(self) -> bool:
        return bool(self.results) and not self.failures

    def by_name(self) -> dict[str, CheckResult]:
        return {result.name: result for result in self.results}

    def table(self) -> str:
        """A fixed-width pass/fail table (one row per check, then a verdict line)."""
        width = max(len(name) for name in CHECKS)
        lines = [f"{'check':<{width}}  result  detail", f"{'-' * width}  ------  ------"]
        for result in self.results:
            verdict = "info" if result.name == "speed" else ("PASS" if result.passed else "FAIL")
            lines.append(f"{result.name:<{width}}  {verdict:<6}  {result.detail}")
        missing = [name for name in CHECKS if name not in self.by_name()]
        if missing:
            lines.append(f"not run (the encoder could not be built): {', '.join(missing)}")
        failed = [result.name for result in self.failures]
        lines.append(
            f"{self.name}: {'FAILED ' + ', '.join(failed) if failed else 'all checks passed'}"
            f" ({sum(r.passed for r in self.results if r.name != 'speed')}/"
            f"{sum(1 for r in self.results if r.name != 'speed')} passed)"
        )
        return "\n".join(lines)


def check_encoder(
    name: str,
    options: registry.EncoderOptions | None = None,
    seconds: float = 1.0,
    rng_seed: int = 0,
) -> CheckReport:
    """Every check on encoder ``name`` built with ``options`` (see the module docstring); ``seconds`` scales the
    synthetic audio of the library checks (keep it small for slow models). The encoder is closed afterwards."""
    options = options or registry.EncoderOptions()
    report = CheckReport(name)
    try:
        cls = registry.encoder_class(name)
        problems = registry.protocol_problems(cls)
    except registry.UnknownEncoder:
        raise
    except EncoderUnavailable as error:
        cls, problems = None, [str(error)]
    if problems and registry.is_hf(name):  # an hf: model not found has a placeholder card: say why instead
        ok, why = registry.availability(name, options)
        problems = problems if ok else [why]
    report.results.append(
        CheckResult("protocol", not problems, "; ".join(problems) or f"{cls.__module__}.{cls.__qualname__}")
    )
    if problems:
        return report
    report.results.append(attempt("model_card", lambda: _card_complete(cls)))
    try:
        encoder = registry.build(name, options)
    except Exception as error:  # noqa: BLE001 - any failure to build is the build check's
        report.results.append(CheckResult("build", False, f"{type(error).__name__}: {error}"))
        return report
    try:
        report.results.append(CheckResult("build", True, f"{type(encoder).__name__}: {_where(encoder)}"))
        report.results.append(attempt("card_matches", lambda: _card_matches(encoder, cls)))
        library = run_checks(encoder, rng_seed=rng_seed, seconds=seconds)
        speed = [result for result in library if result.name == "speed"]
        report.results += [result for result in library if result.name != "speed"]
        report.results += harness_checks(encoder, options.batch_size)
        report.results.append(_speed(encoder, speed[0], seconds))
    finally:
        encoder.close()
    return report


def _speed(encoder: Encoder, over_checks: CheckResult, seconds: float) -> CheckResult:
    """The warm speed (one clip of ``max(1, 2 × seconds)`` s after a warm-up call: ``contract.measure_speed``) as
    the value, with the figure over all the checks (first calls included) beside it."""
    clip = max(1.0, 2 * seconds)
    try:
        warm = measure_speed(encoder, seconds=clip)
    except Exception as error:  # noqa: BLE001 - the checks above already report a crashing encoder
        return CheckResult("speed", True, f"{over_checks.detail}; warm measure failed: {error}", over_checks.value)
    return CheckResult(
        "speed",
        True,
        f"{warm:.1f} audio seconds per second warm (a {clip:g} s clip); {over_checks.detail}",
        value=warm,
    )


def _where(encoder: Encoder) -> str:
    card = encoder.card
    weights = encoder.weights_source or card.weights_id or "weight-free"
    return f"{card.sample_rate} Hz, dim {card.dim}, {card.window.describe()}, weights {weights}"


def _card_complete(cls) -> tuple[bool, str]:
    card = cls.card
    empty = [label for label in ("name", "description", "license", "captures") if not str(getattr(card, label, ""))]
    if empty:
        return False, f"the card's {', '.join(empty)} {'is' if len(empty) == 1 else 'are'} empty"
    return True, f"'{card.name}': {card.description} (licence: {card.license})"


def _card_matches(encoder: Encoder, cls) -> tuple[bool, str]:
    built, declared = (encoder.sample_rate, encoder.dim), (cls.card.sample_rate, cls.card.dim)
    return built == declared, f"built {built[0]} Hz dim {built[1]}; card {declared[0]} Hz dim {declared[1]}"


def harness_checks(encoder: Encoder, batch_size: int = 4) -> list[CheckResult]:
    """``decoded_files``, ``stereo`` and ``policy_windows``: the harness's decode → embed path on written files."""
    from benchmark.cache import ArrayCache
    from benchmark.data import load_dataset

    with tempfile.TemporaryDirectory(prefix="musicbench-check-") as tmp:
        root = Path(tmp)
        _write_files(root)
        results = [
            attempt("decoded_files", lambda: _decoded_files(encoder, root, batch_size, ArrayCache, load_dataset))
        ]
        results.append(attempt("stereo", lambda: _stereo(encoder, root, batch_size, ArrayCache, load_dataset)))
    results.append(attempt("policy_windows", lambda: _policy_windows(encoder)))
    return results


def _write_files(root: Path) -> None:
    import soundfile as sf

    rng = np.random.default_rng(0)
    files = root / "files"
    files.mkdir()
    for name, (sr, channels, seconds) in HARNESS_FILES.items():
        t = np.arange(int(seconds * sr)) / sr
        y = 0.3 * np.sin(2 * np.pi * 330 * t)[:, None] + 0.05 * rng.standard_normal((len(t), channels))
        sf.write(files / name, y.astype(np.float32), sr)
    pair = root / "stereo"
    pair.mkdir()
    mono = music(44100, 1.2, 7)
    sf.write(pair / "mono.wav", mono, 44100, subtype="FLOAT")
    sf.write(pair / "stereo.wav", np.stack([mono, mono], axis=1), 44100, subtype="FLOAT")


def _embed(encoder, folder: Path, batch_size: int, cache_cls, load_dataset):
    from benchmark.embedding import embed_files

    files = load_dataset(folder, folder).refs
    hashes = {item.path: item.key for item in files}  # any unique key works with a disabled cache
    result = embed_files(
        files, "reference", encoder, cache_cls(None, {}), hashes, batch_size=batch_size, progress=False
    )
    return files, result


def _decoded_files(encoder, root: Path, batch_size: int, cache_cls, load_dataset) -> tuple[bool, str]:
    files, first = _embed(encoder, root / "files", batch_size, cache_cls, load_dataset)
    if first.failures:
        return False, "; ".join(f"{f.key}: {f.stage}: {f.message}" for f in first.failures)
    missing = {item.key for item in files} - set(first.embeddings)
    if missing:
        return False, f"no embedding for {sorted(missing)}"
    for key, vector in first.embeddings.items():
        if vector.shape != (encoder.dim,) or vector.dtype != np.float32 or not np.isfinite(vector).all():
            return False, f"{key}: {vector.dtype} {vector.shape}, finite={bool(np.isfinite(vector).all())}"
    _, second = _embed(encoder, root / "files", batch_size, cache_cls, load_dataset)
    changed = [k for k in first.embeddings if not np.array_equal(first.embeddings[k], second.embeddings.get(k))]
    if changed:
        return False, f"a second pass differs for {changed}"
    return True, f"{len(files)} files ({', '.join(HARNESS_FILES)}) → finite float32 ({encoder.dim},), same twice"


def _stereo(encoder, root: Path, batch_size: int, cache_cls, load_dataset) -> tuple[bool, str]:
    _, result = _embed(encoder, root / "stereo", batch_size, cache_cls, load_dataset)
    if result.failures:
        return False, "; ".join(f"{f.key}: {f.stage}: {f.message}" for f in result.failures)
    ok, detail = _within_tolerance(result.embeddings["stereo.wav"], result.embeddings["mono.wav"].astype(np.float64))
    return ok, "stereo file (both channels one signal) vs its mono file: " + detail


def _policy_windows(encoder) -> tuple[bool, str]:
    rng = np.random.default_rng(1)
    clips = [
        rng.standard_normal(int(1.0 * encoder.sample_rate)).astype(np.float32) * 0.1,
        rng.standard_normal(int(0.3 * encoder.sample_rate)).astype(np.float32) * 0.1,
    ]
    windows = [w for audio in clips for w in encoder.window.segment(audio, encoder.sample_rate)]
    out = encoder.embed(windows)
    ok = out.shape == (len(windows), encoder.dim) and bool(np.isfinite(out).all())
    return ok, f"{len(windows)} windows of a 1 s and a 0.3 s clip → {out.dtype} {out.shape}"

"""The contract every registered encoder meets, on short random audio (neural ones at random init).

Adding an encoder = one file + one registry entry + passing this test. The checks themselves live in
``benchmark.encoder_check`` (``check_encoder``: card, build, the harness's decode → embed path on odd files) and
``encoders.contract`` (``run_checks``: the library invariants), which is exactly what ``musicbench check-encoder``
runs on anyone's encoder; this test runs it on every registered encoder, so the two never diverge.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.encoder_check import CHECKS, check_encoder
from encoders import registry
from encoders.base import Encoder, EncoderUnavailable, WeightFreeEncoder
from encoders.contract import CheckResult, run_checks
from encoders.mfcc import MFCCStats

#: keyword arguments for write_random_weights that keep test builds quick (same widths, fewer layers)
QUICK_WEIGHTS = {"muq": {"small": True}}

#: seconds scale of the contract checks' audio (short: the neural encoders run on 2 CPU cores)
CHECK_SECONDS = 0.5


def _marked(name: str):
    """Encoders that build a model architecture are ``slow``; the weight-free ones are not."""
    weight_free = issubclass(registry.encoder_class(name), WeightFreeEncoder)
    return pytest.param(name, marks=() if weight_free else pytest.mark.slow)


@pytest.fixture(scope="module")
def options_for(tmp_path_factory):
    """``options_for(name, **overrides)`` → build options; a neural encoder's random-init weights are written once."""
    root = tmp_path_factory.mktemp("contract-weights")
    written: dict[str, str | None] = {}

    def get(name: str, **overrides) -> registry.EncoderOptions:
        if name not in written:
            cls = registry.encoder_class(name)
            written[name] = (
                str(cls.write_random_weights(root / name, **QUICK_WEIGHTS.get(name, {})))
                if hasattr(cls, "write_random_weights")
                else None
            )
        return registry.EncoderOptions(weights=written[name], batch_size=4, **overrides)

    return get


@pytest.mark.parametrize("name", [_marked(name) for name in registry.names()])
def test_encoder_contract(name, options_for):
    """Every check of ``benchmark.encoder_check`` (what ``musicbench check-encoder`` runs) passes: the card is
    complete and matches the built encoder (sample rate, dim, licence, description, captures); the harness path
    (decode → embed_files) gives finite float32 (dim,) embeddings for 8/22.05/44.1 kHz stereo/48 kHz FLAC files and a
    0.2 s clip, identical on a second pass, and a stereo file embeds as its mono signal; the policy's windows embed
    to (n, dim); and every library invariant (``encoders.contract.run_checks``) holds."""
    report = check_encoder(name, options_for(name), rng_seed=0, seconds=CHECK_SECONDS)
    assert [result.name for result in report.results] == list(CHECKS), report.table()
    assert report.ok, report.table()
    speed = report.by_name()["speed"]
    assert speed.value is not None and speed.value > 0


@pytest.mark.parametrize(
    "name",
    [_marked(name) for name in registry.names() if not issubclass(registry.encoder_class(name), WeightFreeEncoder)],
)
def test_cuda_without_cuda_is_refused_with_the_fix(name, options_for):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(EncoderUnavailable, match="CUDA is not available.*--device cpu"):
        registry.build(name, options_for(name, device="cuda"))


class _Broken(Encoder):
    """Breaks the contract in ways the checks must notice."""

    card = MFCCStats.card

    def __init__(self, nan_float64: bool = False):
        self.calls, self.nan_float64 = 0, nan_float64

    def embed(self, batch):
        if self.nan_float64:  # wrong dtype, NaN
            return np.full((len(batch), self.dim), np.nan)
        self.calls += 1  # depends on the call count and on the batch; modifies its input in place
        for item in batch:
            item *= 1.0001
        return np.full((len(batch), self.dim), float(len(batch) + self.calls), dtype=np.float32)


def test_run_checks_reports_broken_encoders():
    results = {result.name: result for result in run_checks(_Broken(), seconds=0.2)}
    assert all(isinstance(result, CheckResult) for result in results.values())
    for name in ("deterministic", "input_untouched", "batch_equals_single", "sliced_batches"):
        assert not results[name].passed, name
    assert results["output_shape_dtype"].passed and results["finite"].passed

    results = {result.name: result for result in run_checks(_Broken(nan_float64=True), seconds=0.2)}
    for name in ("output_shape_dtype", "finite", "shorter_than_window", "source_sample_rates", "silence"):
        assert not results[name].passed, name


class _Warning(Encoder):
    """A correct encoder that warns on input shorter than 0.1 s."""

    card = MFCCStats.card

    def embed(self, batch):
        import warnings

        if any(len(item) < 0.1 * self.sample_rate for item in batch):
            warnings.warn("input too short for a full frame", UserWarning, stacklevel=2)
        return np.stack([np.full(self.dim, float(np.mean(np.abs(item))), dtype=np.float32) for item in batch])


def test_a_checks_warnings_are_in_its_row_not_on_stderr(recwarn):
    results = {result.name: result for result in run_checks(_Warning(), seconds=0.2)}
    assert results["shorter_than_window"].passed
    assert "warned" in results["shorter_than_window"].detail
    assert "UserWarning: input too short for a full frame" in results["shorter_than_window"].detail
    assert "warned" not in results["finite"].detail  # ordinary inputs: no warning
    assert len(recwarn) == 0  # none escaped to the caller


class _NotAnEncoder:
    """Has an ``embed`` but is no ``Encoder`` and has no card: refused by the protocol check."""

    def embed(self, batch):
        return np.zeros((len(batch), 3), dtype=np.float32)


class _WrongShape(Encoder):
    """An ``Encoder`` whose embeddings have 3 columns while its card says 38."""

    card = MFCCStats.card

    def __init__(self, options=None):
        self.options = options

    def embed(self, batch):
        return np.zeros((len(batch), 3), dtype=np.float32)


def _check_cli(spec: str, *options: str):
    from click.testing import CliRunner

    from benchmark.cli import main

    return CliRunner().invoke(main, ["check-encoder", spec, "--seconds", "0.2", *options])


def _row(output: str, check: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(check + " "))


def test_check_encoder_refuses_a_class_that_violates_the_protocol_naming_the_check():
    result = _check_cli(f"{__name__}:_WrongShape")
    assert result.exit_code == 1, result.output
    assert "FAIL" in _row(result.output, "output_shape_dtype")
    assert "expected float32 (3, 38)" in _row(result.output, "output_shape_dtype")
    assert "PASS" in _row(result.output, "protocol")
    assert "FAILED" in result.output.splitlines()[-1] and "output_shape_dtype" in result.output.splitlines()[-1]

    result = _check_cli(f"{__name__}:_NotAnEncoder")
    assert result.exit_code == 1, result.output
    assert "FAIL" in _row(result.output, "protocol") and "not a subclass of encoders.base.Encoder" in result.output
    assert "not run (the encoder could not be built)" in result.output


def test_check_encoder_cli_passes_a_builtin_and_refuses_unknown_names():
    result = _check_cli("mfcc")
    assert result.exit_code == 0, result.output
    assert all(f"{name} " in result.output for name in CHECKS)
    assert "mfcc: all checks passed" in result.output

    result = _check_cli("no-such-encoder")
    assert result.exit_code == 2 and "unknown encoder 'no-such-encoder'" in result.output
    result = _check_cli("no_such_module_xyz:Enc")
    assert result.exit_code == 1 and "ModuleNotFoundError" in _row(result.output, "protocol")


def test_check_encoder_takes_the_run_window_options(monkeypatch):
    """--window / --hop / --min-tail mean what they mean for ``run``: the same checks, the same policy."""
    from benchmark import encoder_check
    from benchmark.config import window_policy

    seen = []
    real = encoder_check.check_encoder
    monkeypatch.setattr(
        encoder_check, "check_encoder", lambda name, options, **kw: seen.append(options) or real(name, options, **kw)
    )
    result = _check_cli("mfcc", "--window", "0.4", "--hop", "0.2", "--min-tail", "0.05")
    assert result.exit_code == 0, result.output
    assert seen[0].window == window_policy(0.4, 0.2, 0.05)
    result = _check_cli("mfcc", "--window", "0.4", "--min-tail", "0.3")  # more than half the window
    assert result.exit_code == 2 and "--min-tail 0.3" in result.output
    result = _check_cli("mfcc", "--min-tail", "0.02")
    assert result.exit_code == 2 and "--min-tail needs --window" in result.output

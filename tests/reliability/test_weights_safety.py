"""Weights safety: a pinned sha256 refuses a different file before anything unpickles it, and every
``torch.load`` in the model code reads weights only (or says, in a comment, why it cannot)."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import pytest
from reliability_helpers import REPO

from encoders.base import EncoderUnavailable
from encoders.weights import SHA256_ENV, WeightsHashMismatch, WeightsSpec, resolve_weights

SPEC = WeightsSpec(model="toy", hf_repo="nobody/toy", files=("toy.pt",))
DIR_SPEC = WeightsSpec(model="toydir", hf_repo="nobody/toydir", files=("config.json", "model.bin"), is_directory=True)
# model code owned by this suite vs. by the encoder/metric authors (failures there are reported as xfail)
OWNED = {"encoders/weights.py"}


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "toy.pt"
    path.write_bytes(b"pretend these are tensors")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_matching_hash_is_accepted(checkpoint, monkeypatch):
    path, digest = checkpoint
    assert resolve_weights(SPEC, path, expected_sha256=digest).path == path
    assert resolve_weights(SPEC, path, expected_sha256=digest.upper()).path == path
    monkeypatch.setenv(SHA256_ENV, f"other=abc, toy={digest}")
    assert resolve_weights(SPEC, path).path == path


def test_mismatching_hash_is_refused_naming_both_hashes(checkpoint, monkeypatch):
    path, digest = checkpoint
    wrong = "0" * 64
    with pytest.raises(WeightsHashMismatch) as raised:
        resolve_weights(SPEC, path, expected_sha256=wrong)
    message = str(raised.value)
    assert digest in message and wrong in message and str(path) in message and "refusing" in message
    assert isinstance(raised.value, EncoderUnavailable)  # the CLI shows it as a one-line error
    monkeypatch.setenv(SHA256_ENV, f"toy={wrong}")
    with pytest.raises(WeightsHashMismatch, match=digest):
        resolve_weights(SPEC, path)
    monkeypatch.setenv("MUSICBENCH_WEIGHTS", str(path.parent))  # found via the env folder: checked too
    with pytest.raises(WeightsHashMismatch):
        resolve_weights(SPEC)


def test_directory_weights_are_pinned_by_their_combined_hash(tmp_path):
    folder = tmp_path / "toydir"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.bin").write_bytes(b"weights")
    digest = resolve_weights(DIR_SPEC, folder).sha256()
    assert resolve_weights(DIR_SPEC, folder, expected_sha256=digest).path == folder
    (folder / "model.bin").write_bytes(b"tampered")
    with pytest.raises(WeightsHashMismatch, match=digest):
        resolve_weights(DIR_SPEC, folder, expected_sha256=digest)


def test_malformed_pin_variable_is_a_clear_error(checkpoint, monkeypatch):
    monkeypatch.setenv(SHA256_ENV, "just-a-hash-without-a-model")
    with pytest.raises(EncoderUnavailable, match="model=sha256 pairs"):
        resolve_weights(SPEC, checkpoint[0])


def test_no_pin_means_no_check(checkpoint, monkeypatch):
    monkeypatch.delenv(SHA256_ENV, raising=False)
    assert resolve_weights(SPEC, checkpoint[0]).source == "explicit"


def _torch_load_calls(path: Path):
    """(line, verdict) for each ``<something>torch.load(...)`` call in ``path``; verdict None = weights-only."""
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"):
            continue
        owner = ast.unparse(node.func.value)
        if not owner.split(".")[-1].lstrip("_").endswith("torch"):
            continue
        keyword = next((k for k in node.keywords if k.arg == "weights_only"), None)
        function = node
        while function in parents and not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = parents[function]
        forced = isinstance(function, ast.FunctionDef) and any(  # kwargs["weights_only"] = True before the call
            isinstance(a, ast.Assign)
            and isinstance(a.value, ast.Constant)
            and a.value.value is True
            and any(
                isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Constant) and t.slice.value == "weights_only"
                for t in a.targets
            )
            for a in ast.walk(function)
        )
        if keyword is not None and isinstance(keyword.value, ast.Constant) and keyword.value.value is True:
            yield node.lineno, None
        elif keyword is None and forced:
            yield node.lineno, None
        else:
            above = lines[max(0, node.lineno - 4) : node.lineno - 1]
            explained = any(line.strip().startswith("#") for line in above) or "#" in lines[node.lineno - 1]
            yield (
                node.lineno,
                None
                if explained
                else (
                    f"torch.load without weights_only=True and no comment saying why: {lines[node.lineno - 1].strip()}"
                ),
            )


def test_every_torch_load_is_weights_only_or_explains_why():
    files = sorted(
        [*(REPO / "encoders").glob("*.py"), *(REPO / "metrics").glob("*.py"), *(REPO / "benchmark").glob("*.py")]
    )
    problems, calls = {}, 0
    for path in files:
        for line, verdict in _torch_load_calls(path):
            calls += 1
            if verdict:
                problems[f"{path.relative_to(REPO)}:{line}"] = verdict
    assert calls, "the audit found no torch.load call at all: the pattern is broken"
    ours = {where: why for where, why in problems.items() if where.split(":")[0] in OWNED}
    assert not ours, ours
    if problems:
        pytest.xfail(
            "weights_only=False fallbacks in code owned by the encoder/metric authors, entered "
            "automatically when weights_only=True raises UnpicklingError - i.e. exactly for the files "
            "weights_only exists to refuse (a malicious pickle included). Gate the fallback on a pinned "
            "sha256 (resolve_weights(expected_sha256=...) / $MUSICBENCH_WEIGHTS_SHA256) or an explicit "
            "opt-in, and add a comment at the call: " + "; ".join(f"{k}: {v}" for k, v in problems.items())
        )


def test_the_audit_itself_tells_safe_from_unsafe_loads(tmp_path):
    source = tmp_path / "sample.py"
    source.write_text(
        "import torch\n"
        "def a(p):\n    return torch.load(p, weights_only=True)\n"
        "def b(p):\n    return torch.load(p)\n"
        "def c(p):\n    # this legacy format pickles a class: checked by its pinned sha256 above\n"
        "    return torch.load(p, weights_only=False)\n"
        "def d(self, f, **kwargs):\n    kwargs['weights_only'] = True\n    return self._torch.load(f, **kwargs)\n"
        "def e(p):\n    return torch.load(p, weights_only=False)\n"
    )
    verdicts = dict(_torch_load_calls(source))
    assert [line for line, verdict in sorted(verdicts.items()) if verdict] == [5, 13]
    assert len(verdicts) == 5


class _Opaque:  # pickled by value: weights_only=True refuses it
    pass


def test_full_unpickle_needs_a_pinned_hash_or_an_explicit_opt_in(tmp_path, monkeypatch):
    import torch

    from encoders.base import EncoderUnavailable
    from encoders.weights import PICKLE_ENV, SHA256_ENV, load_torch_checkpoint, sha256_file

    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "extra": _Opaque()}, path)
    monkeypatch.delenv(PICKLE_ENV, raising=False)
    monkeypatch.delenv(SHA256_ENV, raising=False)
    with pytest.raises(EncoderUnavailable, match=f"cannot be loaded safely.*{SHA256_ENV}=toy=.*{PICKLE_ENV}=1"):
        load_torch_checkpoint(path, "toy")
    monkeypatch.setenv(SHA256_ENV, f"toy={sha256_file(path)}")
    assert torch.equal(load_torch_checkpoint(path, "toy")["state_dict"]["w"], torch.ones(2))
    monkeypatch.delenv(SHA256_ENV)
    monkeypatch.setenv(PICKLE_ENV, "1")
    assert isinstance(load_torch_checkpoint(path, "toy")["extra"], _Opaque)
    torch.save({"w": torch.zeros(1)}, tmp_path / "plain.pt")
    monkeypatch.delenv(PICKLE_ENV)
    assert torch.equal(load_torch_checkpoint(tmp_path / "plain.pt", "toy")["w"], torch.zeros(1))


@pytest.mark.slow
def test_junk_checkpoint_with_pickle_opt_in_is_one_line_not_a_traceback(tmp_path, tiny_dataset, monkeypatch):
    """Issue 13 item 18: an unreadable checkpoint under MUSICBENCH_ALLOW_PICKLE=1 used to escape as an EncoderError
    traceback; it is the user's to fix, so the CLI prints one line and leaves a FAILED run that says why."""
    from click.testing import CliRunner

    from benchmark.cli import main
    from encoders.weights import PICKLE_ENV

    junk = tmp_path / "junk.pt"
    junk.write_bytes(bytes(range(256)) * 20)
    monkeypatch.setenv(PICKLE_ENV, "1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    args = ["run", "--encoder", "clap", "--weights", str(junk), "--metrics", "none", "--no-progress"]
    args += ["--refs", str(tiny_dataset["refs"]), "--targets", str(tiny_dataset["targets"])]
    args += ["--cache-dir", str(tmp_path / "cache")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith("Error: cannot read CLAP checkpoint") and str(junk) in errors[0]
    assert isinstance(result.exception, SystemExit)  # click's clean exit, not an escaped EncoderError
    assert "Traceback" not in result.output
    assert "FAILED" in result.output

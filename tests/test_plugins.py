"""Plug-ins (issue 19): entry points discovered without importing them, the example plug-in package end to end, a
broken plug-in listed as unavailable while the CLI works, and ``package.module:Class`` names.

The example plug-in (examples/musicbench-example-plugin) is installed by ``make install`` (CI); these tests need it.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from cli_helpers import dataset_args
from click.testing import CliRunner

from benchmark.cli import main
from encoders import plugins
from encoders import registry as encoder_registry
from metrics import registry as metric_registry

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = "musicbench-example-plugin"
INSTALL = "pip install --no-deps --no-build-isolation -e examples/musicbench-example-plugin (make install does it)"


@pytest.fixture(scope="module")
def example_installed():
    try:
        return metadata.distribution(EXAMPLE).version
    except metadata.PackageNotFoundError:
        pytest.fail(f"the example plug-in is not installed: {INSTALL}")


def _invoke(*args):
    return CliRunner().invoke(main, list(args))


def test_listing_names_the_plugin_and_its_package_without_importing_it(example_installed):
    code = (
        "import sys; from click.testing import CliRunner; from benchmark.cli import main; "
        "r = CliRunner().invoke(main, ['encoders']); print(r.output); assert r.exit_code == 0, r.output; "
        "r = CliRunner().invoke(main, ['metrics']); print(r.output); assert r.exit_code == 0, r.output; "
        "loaded = [m for m in ('musicbench_example', 'transformers', 'torch') if m in sys.modules]; "
        "assert not loaded, loaded"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"from {EXAMPLE} {example_installed}, entry point musicbench_example.encoder:BandEnergyStats" in done.stdout
    assert "example-bands" in done.stdout and "module found (not imported)" in done.stdout
    assert f"example_loudness plug-in from {EXAMPLE} {example_installed}" in done.stdout


def test_detailed_listing_imports_the_plugin_and_shows_its_card(example_installed):
    result = _invoke("encoders", "--detail")
    assert result.exit_code == 0, result.output
    block = result.output.split("Plug-ins (imported):")[1]
    assert "example-bands  ready" in block and "sample rate 16000 Hz, dim 48" in block
    result = _invoke("encoders", "example-bands")
    assert result.exit_code == 0 and "dim 48" in result.output and f"from {EXAMPLE}" in result.output
    assert "example-bands" in encoder_registry.plugin_names()
    assert "example_loudness" in metric_registry.names()


def test_example_plugin_passes_check_encoder(example_installed):
    result = _invoke("check-encoder", "example-bands", "--seconds", "0.5")
    assert result.exit_code == 0, result.output
    assert "example-bands: all checks passed" in result.output


@pytest.mark.slow
def test_suite_with_the_example_plugin_end_to_end(example_installed, tiny_dataset):
    """A suite of a built-in, the plug-in by its entry-point name and the same class by ``module:Class``, with the
    plug-in metric; every child finishes and logs the plug-in metric."""
    import mlflow

    encoders = "mfcc,example-bands,musicbench_example.encoder:BandEnergyStats"
    result = _invoke(
        "suite",
        "--encoders",
        encoders,
        *dataset_args(tiny_dataset, tiny_dataset["root"] / "cache", metrics="melody,example_loudness"),
        "--experiment",
        "plugins-suite",
    )
    assert result.exit_code == 0, result.output
    runs = mlflow.search_runs(experiment_names=["plugins-suite"], filter_string="tags.`musicbench.encoder` != ''")
    by_encoder = {row["tags.musicbench.encoder"]: row for _, row in runs.iterrows()}
    assert set(encoders.split(",")) <= set(by_encoder)
    for name in encoders.split(","):
        row = by_encoder[name]
        assert row["status"] == "FINISHED", name
        logged = {key.rsplit("/", 1)[-1]: value for key, value in row.items() if key.startswith("metrics.")}
        assert logged["loudness_diff_db_top1_mean"] >= 0, name  # logged under its section: <section>/<name>
        assert logged["melody_acc_top1_mean"] >= 0, name
    assert by_encoder["example-bands"]["params.encoder_dim"] == "48"
    # the same class under two names: the same embeddings, so the same retrieval
    assert (
        by_encoder["example-bands"]["metrics.retrieval/map"]
        == by_encoder["musicbench_example.encoder:BandEnergyStats"]["metrics.retrieval/map"]
    )


@pytest.fixture
def broken_plugins(tmp_path, monkeypatch):
    """A fake installed distribution (a dist-info folder on sys.path) declaring plug-ins that cannot work: one whose
    module does not exist, one whose module raises at import, one that is not an encoder class, one metric whose
    module is missing, and one that takes a built-in's name."""
    site = tmp_path / "site"
    info = site / "broken_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[musicbench.encoders]\n"
        "missing-module = no_such_module_xyz.enc:Encoder\n"
        "raises-at-import = raising_plugin_xyz:Encoder\n"
        "not-an-encoder = raising_plugin_ok_xyz:NotAnEncoder\n"
        "mfcc = raising_plugin_ok_xyz:NotAnEncoder\n"
        "[musicbench.metrics]\n"
        "broken_metric = no_such_module_xyz.metric:Metric\n"
    )
    (site / "raising_plugin_xyz.py").write_text("raise RuntimeError('boom at import')\n")
    (site / "raising_plugin_ok_xyz.py").write_text("class NotAnEncoder:\n    pass\n")
    monkeypatch.syspath_prepend(str(site))
    plugins.forget()
    yield site
    plugins.forget()


def test_a_broken_plugin_is_listed_unavailable_and_the_cli_still_works(broken_plugins, tiny_dataset):
    result = _invoke("encoders")
    assert result.exit_code == 0, result.output
    assert "mfcc " in result.output and "chroma " in result.output  # the built-ins are listed as ever
    lines = result.output.splitlines()
    missing = lines.index(next(line for line in lines if line.startswith("missing-module")))
    assert "unavailable" in lines[missing] and "from broken-plugin 1.0" in lines[missing + 1]
    assert "module 'no_such_module_xyz' not found" in lines[missing + 2]
    assert "'mfcc' is a built-in name" in result.output

    result = _invoke("encoders", "--detail")
    assert result.exit_code == 0, result.output
    assert "RuntimeError: boom at import" in result.output
    assert "is not a subclass of encoders.base.Encoder" in result.output
    assert "ModuleNotFoundError" in result.output

    result = _invoke("metrics", "--detail")
    assert result.exit_code == 0 and "broken_metric" in result.output and "unavailable" in result.output

    # the built-in mfcc is not shadowed; the broken metric plug-in is skipped by auto with its error
    assert encoder_registry.encoder_class("mfcc").__module__ == "encoders.mfcc"
    selected, skipped = metric_registry.select("auto")
    assert "melody" in [metric.name for metric in selected]
    assert "ModuleNotFoundError" in skipped["broken_metric"]

    # using the broken one is a one-line error (no traceback); check-encoder names the failing check
    result = _invoke("check-encoder", "raises-at-import")
    assert result.exit_code == 1 and "boom at import" in _row(result.output, "protocol")
    result = _invoke("run", "--encoder", "missing-module", *dataset_args(tiny_dataset, tiny_dataset["root"] / "c"))
    assert result.exit_code == 1, result.output
    assert "failed to load" in result.output and "Traceback" not in result.output

    # and everything else still runs
    result = _invoke("run", "--encoder", "mfcc", *dataset_args(tiny_dataset, tiny_dataset["root"] / "c"))
    assert result.exit_code == 0, result.output


def _row(output: str, check: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(check + " "))


def test_discovery_reads_metadata_only(broken_plugins):
    found = plugins.discover(plugins.ENCODER_GROUP, tuple(encoder_registry.ENCODERS))
    assert found["missing-module"].distribution == "broken-plugin" and found["missing-module"].version == "1.0"
    assert "raising_plugin_xyz" not in sys.modules  # listing imported nothing
    assert found["raises-at-import"].module_found() == (True, "module found (not imported)")
    assert "raising_plugin_xyz" not in sys.modules
    assert found["mfcc"].conflict and "built-in" in found["mfcc"].conflict
    with pytest.raises(plugins.PluginError, match="boom at import"):
        found["raises-at-import"].load()

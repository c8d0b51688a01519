"""perf/bench.py (``make bench``): every perf script imports and parses its full and quick arguments, the table and
exit status follow the rows, and the quick mode runs the cheap scripts end to end."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from perf import bench  # noqa: E402
from perf.common import Target  # noqa: E402


@pytest.mark.parametrize("script", bench.SCRIPTS, ids=lambda s: s.module)
def test_every_script_parses_its_full_and_quick_arguments(script):
    module = importlib.import_module(f"perf.{script.module}")
    assert callable(module.main)
    for argv in (script.argv, script.quick):
        assert module.build_parser().parse_args(list(argv)) is not None


def test_every_target_of_the_issue_is_measured():
    assert set(bench.ALL) == {"1", "2", "3", "4", "5", "6", "7", "8", "info"}


def test_rows_are_numbered_filtered_tabled_and_fail_the_exit_status(monkeypatch, capsys, tmp_path):
    rows = {
        "clap_speed": [
            Target("1: CLAP fp32", "1.6×", True),
            Target("2: CLAP bf16", "0.5×", False, "needs bf16 hardware | x"),
            Target("  same, detail row", "-", True),
            Target("4: warm", "9000×", True),
        ],
        "ir_scale": [Target("exact top-10", "0.5 s", True), Target("  same, ratio", "0.7×", True)],
        "aesthetics_throughput": [Target("info: aesthetics", "3 s/min", True, info=True)],
    }
    ran = []

    def fake(script, argv):
        ran.append((script.module, argv))
        return rows.get(script.module, []), "1.0 → 2.0"

    monkeypatch.setattr(bench, "run_script", fake)
    assert bench.main(["--only", "4,5,info", "--quick", "--json", str(tmp_path / "r.json")]) == 0
    assert [m for m, _ in ran] == [
        "ir_scale",
        "clap_speed",
        "encoder_throughput",
        "aesthetics_throughput",
        "worker_memory",
    ]
    assert dict(ran)["ir_scale"] == list(bench.SCRIPTS[0].quick)
    out = capsys.readouterr().out
    assert "| 4 | warm | 9000× | PASS |" in out and "| info | aesthetics | 3 s/min | info |" in out
    assert "| 5 | exact top-10 | 0.5 s | PASS |  | 1.0 → 2.0 |" in out and "| 5 | same, ratio |" in out
    assert "CLAP bf16" not in out and "CLAP fp32" not in out  # targets 1 and 2 not selected

    ran.clear()
    assert bench.main(["--only", "2"]) == 1  # a FAIL row: non-zero exit
    out = capsys.readouterr().out
    assert "| 2 | CLAP bf16 | 0.5× | FAIL | needs bf16 hardware \\| x |" in out
    assert "| 2 | same, detail row |" in out and "1 FAIL: 2" in out
    assert ran == [("clap_speed", [])]  # full mode: the script's defaults

    with pytest.raises(SystemExit, match="unknown target"):
        bench.main(["--only", "9"])


def test_a_crashing_script_is_a_fail_row(monkeypatch):
    def broken(argv):
        raise RuntimeError("boom")

    monkeypatch.setattr(importlib.import_module("perf.ir_scale"), "main", broken)
    rows, load = bench.run_script(bench.SCRIPTS[0], [])
    assert [(r.measured, r.passed) for r in rows] == [("crashed", False)] and "boom" in rows[0].detail
    assert "→" in load


@pytest.mark.slow
def test_quick_mode_runs_the_cheap_scripts_end_to_end(capsys):
    """ir_scale and melody_speed on tiny inputs (≈ 35 s each on a loaded 2-core machine: subprocesses importing
    torch, numba's JIT): every row comes back, none crashed."""
    bench.main(["--quick", "--only", "5,6"])
    out = capsys.readouterr().out
    table = out[out.index("| # | target |") :]
    assert "crashed" not in table
    assert table.count("\n| 5 |") >= 6 and table.count("\n| 6 |") >= 3
    assert "identical" in table


@pytest.mark.slow
@pytest.mark.timeout(1800)  # ~7 min on a quiet 2-core machine; over the default 600 s when the machine is shared
def test_quick_mode_runs_every_script(capsys):
    """Everything on tiny inputs (CLAP and the 1-hour check included: minutes): no script crashes."""
    import subprocess  # a process of its own: the scripts set up stores, environments and pools of their own

    done = subprocess.run(
        [sys.executable, str(ROOT / "perf" / "bench.py"), "--quick"], capture_output=True, text=True, cwd=ROOT
    )
    out = done.stdout
    assert "| # | target |" in out, done.stderr[-3000:]
    table = out[out.index("| # | target |") :]
    assert "crashed" not in table
    assert {line.split("|")[1].strip() for line in table.splitlines()[2:] if line.startswith("| ")} >= set(bench.ALL)

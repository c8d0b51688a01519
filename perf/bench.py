"""Issue 11's performance targets, all in one command (``make bench``): one table, non-zero exit on any FAIL.

    .venv/bin/python perf/bench.py [--only 3,7] [--quick] [--json results.json]

Each script of ``perf/`` measures its comparisons side by side (interleaved rounds, ratios) and checks agreement
(cosine or exact equality); this runs their ``main(argv)`` one after the other, never two at once, and prints the
rows they return in one table with the 1-minute load average around each script (on a shared machine the ratios
are what to read; absolute times drift with the load).

| target | script | what |
|---|---|---|
| 1, 2, 4 | clap_speed.py | CLAP fp32 / bf16 cold vs the report's loop; warm re-run |
| 3, 8 | baselines_speed.py | mfcc / chroma cold run vs a file-by-file loop; ``--help`` / ``encoders`` start-up |
| 5 | ir_scale.py | exact top-10 and IR measures at 100k × 1k × 512 |
| 6 | melody_speed.py | melody accuracy vs the report's formula file by file |
| 7 | long_input_memory.py | a 1-hour stereo file, ``clap`` + ``--metrics auto``: peak RSS |
| info | encoder_throughput.py, aesthetics_throughput.py, worker_memory.py | throughput figures, no target |

``--only`` takes target numbers and/or ``info``; a script runs when it measures one of them, and only the rows of
the selected targets are shown. ``--quick`` runs every script on tiny inputs (a smoke test of the machinery: its
verdicts mean nothing, since the targets are defined on the full sizes).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import re
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from perf.common import Target, verdict  # noqa: E402  (after the sys.path set-up)


@dataclass(frozen=True)
class Script:
    module: str  # perf.<module>
    targets: tuple[str, ...]  # the target numbers its rows belong to ("info": no target)
    argv: tuple[str, ...] = ()  # the full measurement
    quick: tuple[str, ...] = ()  # tiny sizes: does it run at all?


SCRIPTS = (
    Script("ir_scale", ("5",), quick=("--refs", "4000", "--queries", "50", "--old-queries", "10", "--rounds", "1")),
    Script("melody_speed", ("6",), quick=("--files", "2", "--seconds", "2", "--rounds", "1")),
    Script("baselines_speed", ("3", "8"), quick=("--files", "4", "--seconds", "2", "--rounds", "1")),
    Script(
        "clap_speed",
        ("1", "2", "4"),
        quick=("--files", "2", "--seconds", "10", "--rounds", "1", "--bf16-rounds", "1", "--warm-minutes", "4"),
    ),
    Script("long_input_memory", ("7",), quick=("--minutes", "0.5")),
    Script("encoder_throughput", ("info",), quick=("--encoders", "mfcc", "--files", "1")),
    Script("aesthetics_throughput", ("info",), quick=("--seconds", "2", "--repeats", "1")),
    Script("worker_memory", ("info",), quick=("--files", "2", "--rounds", "1")),
)
ALL = tuple(dict.fromkeys(t for s in SCRIPTS for t in s.targets))


@dataclass
class Row:
    target: str  # "1".."8" or "info"
    row: Target
    load: str = ""  # 1-min load average when the script started → ended


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.rows if verdict(r.row) == "FAIL"]


def number_of(row: Target, script: Script, previous: str | None) -> str:
    """The target a row belongs to: its ``N:`` prefix, else the script's only target, else the row above's."""
    match = re.match(r"\s*(\d+|info):", row.name)
    if match:
        return match[1]
    if len(script.targets) == 1:
        return script.targets[0]
    return previous or script.targets[0]


def selected(only: str | None) -> set[str]:
    if not only:
        return set(ALL)
    wanted = {part.strip() for part in only.split(",") if part.strip()}
    unknown = wanted - set(ALL)
    if unknown:
        raise SystemExit(f"--only: unknown target(s) {', '.join(sorted(unknown))} (known: {', '.join(ALL)})")
    return wanted


def run_script(script: Script, argv: list[str]) -> tuple[list[Target], str]:
    """The script's rows (a crash is one FAIL row naming the error) and the load average around it."""
    before = os.getloadavg()[0]
    started = time.perf_counter()
    print(f"\n=== perf/{script.module}.py {' '.join(argv)}  (load {before:.1f})", flush=True)
    try:
        rows = importlib.import_module(f"perf.{script.module}").main(argv)
    except Exception as error:  # noqa: BLE001 - one broken script must not hide the others' results
        traceback.print_exc()
        rows = [Target(f"perf/{script.module}.py", "crashed", False, f"{type(error).__name__}: {error}"[:300])]
    after = os.getloadavg()[0]
    print(f"=== perf/{script.module}.py done in {time.perf_counter() - started:.0f} s (load {after:.1f})", flush=True)
    return rows, f"{before:.1f} → {after:.1f}"


def markdown(results: Results) -> str:
    lines = ["| # | target | measured | result | detail | load |", "|---|---|---|---|---|---|"]
    for r in results.rows:
        name = re.sub(r"^\s*(\d+|info):\s*", "", r.row.name).strip()
        cells = (r.target, name, r.row.measured, verdict(r.row), r.row.detail, r.load)
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help=f"comma-separated targets to measure ({','.join(ALL)}) [default: all]")
    parser.add_argument("--quick", action="store_true", help="tiny inputs: a smoke test, verdicts meaningless")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    wanted = selected(args.only)

    results = Results()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    for script in SCRIPTS:
        if not wanted & set(script.targets):
            continue
        rows, load = run_script(script, list(script.quick if args.quick else script.argv))
        previous = None
        for row in rows:
            previous = number_of(row, script, previous)
            if previous in wanted:
                results.rows.append(Row(previous, row, load))

    print(
        f"\nmusicbench performance targets (issue 11){' — QUICK MODE: tiny inputs, verdicts meaningless' * args.quick}"
        f"\nstarted {started}, {os.cpu_count()} CPUs, load average now "
        + " / ".join(f"{x:.1f}" for x in os.getloadavg())
        + "\n"
    )
    print(markdown(results))
    failed = results.failed
    print(f"\n{len(failed)} FAIL" + (": " + ", ".join(sorted({r.target for r in failed})) if failed else ""))
    if args.json:
        args.json.write_text(
            json.dumps(
                [{"target": r.target, "load": r.load, **dataclasses.asdict(r.row)} for r in results.rows], indent=1
            )
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

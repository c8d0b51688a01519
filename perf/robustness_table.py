"""Issue 17's measurement: the robustness scenario's hit@1 per deformation × encoder, read back from MLflow.

Runs ``musicbench suite --scenario robustness --refs DIR --encoders ... --metrics none`` (unless ``--parent`` names
a suite already run; as ``python -m benchmark.cli`` from the root of the tree this script lives in, so a checkout
measures its own code), then reads that suite's children through ``benchmark.runs`` (the same reader as ``compare``)
and prints one markdown table: a row per deformation (the scenario's order), a column per encoder, the overall
hit@1 last, and the issue's three targets checked against it:

* (a) the best encoder's hit@1 over all deformations together ≥ 0.90;
* (b) that encoder's hit@1 ≥ 0.80 on each of pitch ±1/±2, tempo 0.9/1.1, noise 20 dB SNR, gain, MP3 32 kb/s and a
  different excerpt;
* (c) each ``-keyinv`` encoder loses ≤ 0.05 hit@1 against its plain variant on every deformation that does not
  change the pitch (``tonal-timbre`` against ``mfcc`` is shown the same way, as an extra: it is not mfcc's variant).

Point ``MLFLOW_TRACKING_URI`` at a private store and ``--cache-dir`` at a scratch folder to keep the measurement
apart from your own runs, e.g.::

    MLFLOW_TRACKING_URI=sqlite:////tmp/keyinv_mlruns.db python perf/robustness_table.py \\
        --refs ~/.cache/musicbench/demo/v1/refs --query-seconds 7 --cache-dir /tmp/keyinv_cache \\
        --encoders mfcc,chroma,deepchroma,chroma-keyinv,deepchroma-keyinv,tonal-timbre
    python perf/robustness_table.py --parent <suite parent run id>      # the table of a suite already run

The demo set's pieces are 14–20 s long: ``musicbench demo --scenario robustness`` uses 7 s queries there (two
excerpts fit), and so should this script on the demo references; real recordings take the default 20 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmark.measures import plain_metrics  # noqa: E402  (after the sys.path set-up)
from benchmark.runs import child_runs, client, encoder_of, get_run  # noqa: E402
from benchmark.scenarios.deformations import DEFAULT_DEFORMATIONS  # noqa: E402

#: the command line of the tree this script lives in (``python -m benchmark.cli`` from its root)
MUSICBENCH = [sys.executable, "-m", "benchmark.cli"]
#: the deformations target (b) names
LISTED = (
    "excerpt",
    "pitch_up_1",
    "pitch_down_1",
    "pitch_up_2",
    "pitch_down_2",
    "tempo_0.9",
    "tempo_1.1",
    "noise_snr_20",
    "gain_-10db",
    "mp3_32k",
)
OVERALL_TARGET, PER_DEFORMATION_TARGET, INVARIANT_LOSS = 0.90, 0.80, 0.05
#: invariant encoder → the plain one it is held against by target (c)
PLAIN_OF = {"chroma-keyinv": "chroma", "deepchroma-keyinv": "deepchroma", "tonal-timbre": "mfcc"}


def run_suite(args) -> str:
    """Run the suite; return its parent run id (read from the store: the newest parent after the start)."""
    command = [
        *MUSICBENCH,
        "suite",
        "--scenario",
        "robustness",
        "--refs",
        args.refs,
        "--encoders",
        args.encoders,
        "--metrics",
        "none",
        "--workers",
        str(args.workers),
        "--no-progress",
    ]
    if args.query_seconds is not None:
        command += ["--query-seconds", str(args.query_seconds)]
    if args.cache_dir:
        command += ["--cache-dir", args.cache_dir]
    if args.experiment:
        command += ["--experiment", args.experiment]
    if args.out:
        command += ["--out", args.out]
    print("$", " ".join(command), flush=True)
    lines = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT) as done:
        for line in done.stdout:  # shown as it comes, kept to find the parent run id
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append(line)
    parent = None
    for line in lines:
        if "parent" in line.lower() and "run" in line.lower():
            for word in line.replace("(", " ").replace(")", " ").replace(":", " ").split():
                if len(word) == 32 and all(c in "0123456789abcdef" for c in word):
                    parent = word
    if done.returncode not in (0, 1) or parent is None:
        raise SystemExit(f"the suite failed (exit {done.returncode}) or printed no parent run id")
    return parent


def table(parent_id: str) -> tuple[list[str], dict[str, dict[str, float]]]:
    """(encoders in run order, encoder → {deformation or 'all' → hit@1}) of a suite parent's finished children."""
    mlflow_client = client()
    parent = get_run(mlflow_client, parent_id, "suite parent run")
    encoders, values = [], {}
    for child in child_runs(mlflow_client, parent):
        if child.info.status != "FINISHED":
            print(f"skipped: {encoder_of(child)} ({child.info.status})")
            continue
        metrics = plain_metrics(child.data.metrics)
        name = encoder_of(child)
        encoders.append(name)
        values[name] = {"all": metrics.get("hit_rate_at_1", float("nan"))}
        for key, value in metrics.items():
            base, dot, deformation = key.partition(".")
            if base == "hit_rate_at_1" and dot and not deformation.endswith(("_ci_low", "_ci_high")):
                values[name][deformation] = value
    return encoders, values


def render(encoders: list[str], values: dict[str, dict[str, float]]) -> str:
    seen = {d for name in encoders for d in values[name] if d != "all"}
    rows = [d for d in DEFAULT_DEFORMATIONS if d in seen] + sorted(seen - set(DEFAULT_DEFORMATIONS))
    lines = ["| deformation | " + " | ".join(encoders) + " |", "|---" * (len(encoders) + 1) + "|"]
    for row in [*rows, "all"]:
        cells = [f"{values[name][row]:.3f}" if row in values[name] else "–" for name in encoders]
        label = "**all**" if row == "all" else row
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdicts(encoders: list[str], values: dict[str, dict[str, float]]) -> list[str]:
    best = max(encoders, key=lambda name: values[name]["all"])
    overall = values[best]["all"]
    out = [
        f"(a) best encoder {best}: hit@1 over all deformations {overall:.3f} (target ≥ {OVERALL_TARGET}): "
        + ("met" if overall >= OVERALL_TARGET else "NOT met")
    ]
    listed = {d: values[best][d] for d in LISTED if d in values[best]}
    below = {d: v for d, v in listed.items() if v < PER_DEFORMATION_TARGET}
    worst = min(listed, key=listed.get) if listed else None
    out.append(
        f"(b) {best}: lowest listed deformation {worst} {listed.get(worst, float('nan')):.3f} "
        f"(target ≥ {PER_DEFORMATION_TARGET} on each): "
        + ("met" if not below else "NOT met (" + ", ".join(f"{d} {v:.3f}" for d, v in below.items()) + ")")
    )
    for invariant, plain in PLAIN_OF.items():
        if invariant not in values or plain not in values:
            continue
        kept = [d for d in values[plain] if d != "all" and not d.startswith("pitch_") and d in values[invariant]]
        losses = {d: values[plain][d] - values[invariant][d] for d in kept}
        worst = max(losses, key=losses.get)
        label = "(c)" if invariant.endswith("-keyinv") else "(extra, not a target)"
        out.append(
            f"{label} {invariant} vs {plain}: largest loss on a pitch-preserving deformation {worst} "
            f"{losses[worst]:+.3f} (target ≤ {INVARIANT_LOSS}): "
            + ("met" if losses[worst] <= INVARIANT_LOSS + 1e-9 else "NOT met")
        )
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--refs", help="references folder (runs a suite on it)")
    parser.add_argument("--parent", help="a suite parent run id already in the store (runs nothing)")
    parser.add_argument("--encoders", default="mfcc,chroma,deepchroma,chroma-keyinv,deepchroma-keyinv,tonal-timbre")
    parser.add_argument("--query-seconds", type=float, default=None)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--experiment", default=None)
    parser.add_argument("--out", default=None, help="folder for the suite's comparison files")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    if bool(args.refs) == bool(args.parent):
        parser.error("give --refs (run a suite) or --parent (read one), not both")
    print(f"store: {os.environ.get('MLFLOW_TRACKING_URI', '(default)')}", flush=True)
    parent = args.parent or run_suite(args)
    encoders, values = table(parent)
    print(f"\nsuite parent run {parent}: hit@1 per deformation\n")
    print(render(encoders, values))
    print()
    for line in verdicts(encoders, values):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Bounded memory for long input (issue 11, target 7): a whole ``musicbench run`` on a 1-hour 44.1 kHz stereo file
peaks below 2 GB RSS.

    .venv/bin/python perf/long_input_memory.py [--minutes 60] [--limit-mb 2048] [--aesthetics]

The data (kept in ``$MUSICBENCH_HOME/perf/long-input``, outside the repository, and reused): ``targets/`` holds
one generated ``--minutes``-long 44.1 kHz stereo 16-bit wav (a melody over chords, bass and noise, minute by
minute: ``perf/melody_speed.write_hour``), ``refs/`` three 30 s stereo files. The command, run cold (fresh cache,
fresh MLflow store) in a subprocess:

    musicbench run --encoder clap --weights <random-init clap checkpoint> --metrics auto --refs refs --targets targets

with ``MUSICBENCH_WEIGHTS`` naming the folder of those weights, so ``auto`` also runs ``clap_sim`` (its
features are the encoder's cached embeddings) next to ``melody``; ``aesthetics`` has no weights and is skipped
(``--aesthetics`` writes random-init aesthetics weights too, which adds ~10 minutes of CPU for an hour of audio).

Peak memory: the resident memory of the musicbench process and every process it starts, polled every 50 ms and
summed over the process tree as PSS (each page shared by several processes — libraries, the fork server's imports
that its workers inherit, a memory-mapped checkpoint — divided among them, so counted once), and the kernel's own
high-water mark of the largest of them (``getrusage(RUSAGE_CHILDREN).ru_maxrss``, exact). The target holds when
the larger of the two is below the limit. RSS summed over the tree, which counts every shared page once per
process, is printed too. The run's stage timings (read back from its MLflow run) say when the peak happened. The
same run is then repeated with the embeddings cached and the melody features dropped from the cache: the peak of
the evaluate stage alone (melody of the long file, decoded at 44.1 kHz, scored in 2 worker threads), polled.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from perf.common import MUSICBENCH, Target, print_table, timed, work_dir, write_files  # noqa: E402

LIMIT_MB = 2048
PAGE = os.sysconf("SC_PAGE_SIZE")


def _pss_bytes(pid: int) -> int:
    """The proportional set size of ``pid``: its resident pages, each shared page divided among its sharers."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


def _tree_memory(root: int) -> tuple[int, int]:
    """Resident bytes of ``root`` and its descendants, summed (RSS: a page shared by several processes counts once
    per process) and proportional (PSS: once in all); from /proc, processes that vanish meanwhile are skipped."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            pid, ppid = int(entry), int(fields[1])
            rss[pid] = int(Path(f"/proc/{entry}/statm").read_text().split()[1]) * PAGE
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(pid)
    total = proportional = 0
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in rss:
            total += rss[pid]
            with contextlib.suppress(OSError, ValueError):
                proportional += _pss_bytes(pid)
        todo += children.get(pid, [])
    return total, proportional


def run_measured(command: list[str], env: dict[str, str], interval: float = 0.05) -> dict:
    """Run ``command``; its wall time, the polled peaks of its process tree's memory (PSS and RSS summed, and when),
    and the kernel's peak RSS of its largest process."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak = {"bytes": 0, "at": 0.0, "rss": 0}

    def poll() -> None:
        while process.poll() is None:
            rss, pss = _tree_memory(process.pid)
            peak["rss"] = max(peak["rss"], rss)
            if pss > peak["bytes"]:
                peak.update(bytes=pss, at=time.perf_counter() - started)
            time.sleep(interval)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    stdout, stderr = process.communicate()
    watcher.join()
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{stdout[-2000:]}\n{stderr[-4000:]}")
    return {
        "seconds": seconds,
        "polled_peak_mb": peak["bytes"] / 2**20,  # PSS summed over the tree
        "polled_peak_at": peak["at"],
        "polled_rss_sum_mb": peak["rss"] / 2**20,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,  # kB on Linux
        "stdout": stdout,
    }


def _run_metrics(tracking_uri: str) -> dict[str, float]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("long-input")
    run = client.search_runs([experiment.experiment_id], max_results=1)[0]
    return {**run.data.metrics, **{f"tag:{k}": v for k, v in run.data.tags.items() if k.startswith("skipped.")}}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--limit-mb", type=float, default=LIMIT_MB)
    parser.add_argument("--aesthetics", action="store_true", help="also random-init aesthetics weights")
    return parser


def main(argv: list[str] | None = None) -> list[Target]:
    args = build_parser().parse_args(argv)

    from perf.melody_speed import write_hour

    data = work_dir(f"long-input-{args.minutes:g}min")
    hour = data / "targets" / "long.wav"
    if not hour.exists():
        hour.parent.mkdir(parents=True, exist_ok=True)
        tick = time.perf_counter()
        partial = hour.with_suffix(".partial.wav")
        write_hour(partial, int(args.minutes * 60))
        partial.rename(hour)
        print(f"wrote {hour} ({hour.stat().st_size / 2**20:.0f} MB) in {time.perf_counter() - tick:.0f} s")
    write_files(data / "refs", 3, 30.0, 44100, channels=2, prefix="ref")
    weights_root = work_dir("weights")
    weights = weights_root / "clap" / "630k-audioset-best.pt"
    if not weights.exists():
        timed([MUSICBENCH, "random-weights", "clap", str(weights.parent)])
    if args.aesthetics and not (weights_root / "aesthetics").exists():
        timed([MUSICBENCH, "random-weights", "aesthetics", str(weights_root / "aesthetics")])

    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        env = {"MLFLOW_TRACKING_URI": uri, "MUSICBENCH_WEIGHTS": str(weights_root), "MUSICBENCH_HOME": tmp}
        if not args.aesthetics:  # a folder without the aesthetics checkpoint: that metric is skipped, and says so
            only_clap = Path(tmp, "weights")
            (only_clap / "clap").mkdir(parents=True)
            os.symlink(weights, only_clap / "clap" / weights.name)
            env["MUSICBENCH_WEIGHTS"] = str(only_clap)
        command = [
            MUSICBENCH,
            "run",
            "--encoder",
            "clap",
            "--weights",
            str(weights),
            "--metrics",
            "auto",
            "--refs",
            str(data / "refs"),
            "--targets",
            str(data / "targets"),
            "--cache-dir",
            str(Path(tmp, "cache")),
            "--experiment",
            "long-input",
            "--no-progress",
        ]
        print(f"{args.minutes:g} min 44.1 kHz stereo target + 3 × 30 s refs: {' '.join(command[1:])}")
        result = run_measured(command, env)
        metrics = _run_metrics(uri)
        # the same run again with the embeddings cached and the melody features dropped: the evaluate stage alone
        for identity in Path(tmp, "cache").glob("*/identity.json"):
            if json.loads(identity.read_text()).get("metric") == "melody":
                shutil.rmtree(identity.parent)
        again = run_measured(command, env)

    stages = {k: v for k, v in metrics.items() if k.endswith("_seconds") and not k.startswith("tag:")}
    skipped = {k[len("tag:skipped.") :]: v for k, v in metrics.items() if k.startswith("tag:skipped.")}
    plain = [k.rsplit("/", 1)[-1] for k in metrics]  # logged as <section>/<name>
    ran = sorted({k.split("_top1_mean")[0] for k in plain if k.endswith("_top1_mean") and not k.startswith("sim_")})
    print(f"wall {result['seconds']:.0f} s; stages: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(stages.items())))
    print(f"pair metrics computed: {', '.join(ran) or '-'}; skipped: {skipped or '-'}")
    print(
        f"peak memory: polled (process tree, PSS) {result['polled_peak_mb']:.0f} MB "
        f"at {result['polled_peak_at']:.0f} s "
        f"(RSS summed over the tree: {result['polled_rss_sum_mb']:.0f} MB); kernel high-water mark of the largest "
        f"process {result['maxrss_mb']:.0f} MB"
    )
    print(
        f"again, embeddings cached and melody cold ({again['seconds']:.0f} s): peak PSS polled "
        f"{again['polled_peak_mb']:.0f} MB (RSS summed {again['polled_rss_sum_mb']:.0f} MB), largest process "
        f"{again['maxrss_mb']:.0f} MB"
    )
    peak = max(result["polled_peak_mb"], result["maxrss_mb"])
    # RUSAGE_CHILDREN is the high-water mark over every child so far: the second run's own is the polled one
    evaluate_peak = again["polled_peak_mb"]
    melody_ran = "melody_acc" in ran
    return [
        Target(
            f"{args.minutes:g}-min stereo file, clap + --metrics auto: peak memory (< {args.limit_mb:.0f} MB)",
            f"{peak:.0f} MB",
            peak < args.limit_mb and melody_ran,
            f"melody {'included' if melody_ran else 'MISSING'}; {', '.join(ran)}; run {result['seconds']:.0f} s; "
            f"tree PSS {result['polled_peak_mb']:.0f} MB, largest process {result['maxrss_mb']:.0f} MB, "
            f"RSS summed over the tree {result['polled_rss_sum_mb']:.0f} MB",
        ),
        Target(
            f"  same, evaluate stage alone (embeddings cached, melody cold) (< {args.limit_mb:.0f} MB)",
            f"{evaluate_peak:.0f} MB",
            evaluate_peak < args.limit_mb,
            f"tree PSS polled every 50 ms (RSS summed {again['polled_rss_sum_mb']:.0f} MB); "
            f"run {again['seconds']:.0f} s",
        ),
    ]


if __name__ == "__main__":
    rows = main()
    print_table(rows)
    print(json.dumps([row.__dict__ for row in rows]))

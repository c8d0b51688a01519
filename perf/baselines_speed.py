"""Issue 11, targets 3 and 8: weight-free baselines against a file-by-file loop, and the CLI's start-up.

Whole-process wall time of

* the loop: one script, for each file ``librosa.load(path, sr=22050, mono=True)``, the features (MFCC: 20
  coefficients; chroma: ``chroma_stft``), ``[mean, std]`` over frames, then cosine top-5 of the targets against
  the references;
* ``musicbench run --encoder E --metrics none --no-progress`` on the same two folders: start-up, store set-up,
  hashing, embedding, retrieval, MLflow recording (params, tags, metrics, dataset, tables, figures) and exit.

Both run as subprocesses, in interleaved rounds (the order alternates each round; the machine is shared, so only
ratios of the same round mean much), after one untimed warm-up of each (page cache, the sqlite store, .pyc
files). Every musicbench run gets a fresh, empty ``--cache-dir`` (a cold run: every file hashed, decoded and
embedded); all runs record into one sqlite store, created by the warm-up, as a user's second run would find it.
musicbench's embeddings are read back from its cache and compared with the loop's (cosine ≥ 0.9999).

Target 3: loop / musicbench ≥ 1.9 on ≥ 20 minutes of audio. Target 8: ``musicbench --help`` and ``musicbench
encoders`` under 2 s each.

Data: generated (sums of four tones with random phases, plus noise), 44.1 kHz 16-bit stereo WAV, so both sides
decode, mix down and resample to 22.05 kHz, as with real music files; one file in five is a target. Built once
(deterministic) under ``$MUSICBENCH_HOME/perf/``.

    python perf/baselines_speed.py [--files 40] [--seconds 30] [--rounds 3] [--encoders mfcc,chroma]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 1.9
TARGET_CLI_SECONDS = 2.0
RATE, CHANNELS = 44100, 2

#: The loop the issue names, as one script: argv = encoder, refs folder, targets folder, output .npz.
LOOP_SCRIPT = """\
import sys
from pathlib import Path

import librosa
import numpy as np

encoder, refs, targets, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]


def embed(path):
    y, sr = librosa.load(path, sr=22050, mono=True)
    if encoder == "mfcc":
        m = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20)
    else:
        m = librosa.feature.chroma_stft(y=y, sr=sr)
    return np.concatenate([m.mean(1), m.std(1)])


ref_paths, target_paths = sorted(refs.glob("*.wav")), sorted(targets.glob("*.wav"))
R = np.stack([embed(p) for p in ref_paths])
T = np.stack([embed(p) for p in target_paths])
Rn = R / np.linalg.norm(R, axis=1, keepdims=True)
Tn = T / np.linalg.norm(T, axis=1, keepdims=True)
top5 = np.argsort(-(Tn @ Rn.T), axis=1, kind="stable")[:, :5]
np.savez(out, names=[p.name for p in ref_paths + target_paths], embeddings=np.concatenate([R, T]), top5=top5)
"""


def build_data(root: Path, n_files: int, seconds: float) -> tuple[Path, Path]:
    """``root/refs`` and ``root/targets``: ``n_files`` deterministic generated files (every fifth a target)."""
    import numpy as np
    import soundfile as sf

    spec = {"files": n_files, "seconds": seconds, "rate": RATE, "channels": CHANNELS, "version": 1}
    done = root / "complete.json"
    if done.exists() and json.loads(done.read_text()) == spec:
        return root / "refs", root / "targets"
    for sub in ("refs", "targets"):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for old in (root / sub).glob("*.wav"):
            old.unlink()
    t = np.arange(int(seconds * RATE)) / RATE
    for i in range(n_files):
        rng = np.random.default_rng(i)
        freqs = 110.0 * 2 ** (rng.integers(0, 36, size=4) / 12)
        y = sum(np.sin(2 * np.pi * f * t + rng.random() * 6.28) / (k + 1) for k, f in enumerate(freqs))
        y = y + 0.05 * rng.standard_normal(len(t))
        y = 0.25 * y / np.abs(y).max()
        stereo = np.stack([y, 0.9 * y + 0.01 * rng.standard_normal(len(t))], axis=1).astype(np.float32)
        sf.write(root / ("targets" if i % 5 == 0 else "refs") / f"song_{i:03d}.wav", stereo, RATE, "PCM_16")
    done.write_text(json.dumps(spec))
    return root / "refs", root / "targets"


def musicbench_command() -> list[str]:
    script = Path(sys.executable).with_name("musicbench")
    return [str(script)] if script.exists() else [sys.executable, "-m", "benchmark.cli"]


def cpu_seconds() -> float:
    """CPU time (user + system) of every finished child process and its descendants (the pool's workers too)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds, stdout) of one run of ``command``."""
    cpu, started = cpu_seconds(), time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, cpu_seconds() - cpu, done.stdout


def run_id(stdout: str) -> str | None:
    for line in stdout.splitlines():
        if line.startswith("MLflow run "):
            return line.split()[2]
    return None


def compare_embeddings(loop_npz: Path, cache_dir: Path, folders: tuple[Path, Path]) -> tuple[float, float]:
    """(lowest cosine, largest absolute difference) between the loop's embeddings and musicbench's cached ones."""
    import numpy as np

    loop = np.load(loop_npz)
    by_name = dict(zip(loop["names"], loop["embeddings"]))
    cached = {p.stem: p for p in cache_dir.rglob("*.npy")}
    cosines, diffs = [], []
    for folder in folders:
        for path in sorted(folder.glob("*.wav")):
            mine = np.load(cached[hashlib.sha256(path.read_bytes()).hexdigest()])
            theirs = by_name[path.name].astype(np.float32)
            cosines.append(float(mine @ theirs / (np.linalg.norm(mine) * np.linalg.norm(theirs))))
            diffs.append(float(np.max(np.abs(mine - theirs))))
    return min(cosines), max(diffs)


def logged_timings(store: str, run_ids: list[str]) -> dict[str, float]:
    """Medians of the pipeline's own timings (logged as metrics) over the timed runs."""
    os.environ["MLFLOW_TRACKING_URI"] = store
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    runs = [client.get_run(r).data.metrics for r in run_ids if r]
    keys = ("hash_seconds", "embed_seconds", "retrieve_seconds", "total_seconds")
    return {k: statistics.median(m[k] for m in runs) for k in keys if runs and all(k in m for m in runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each file")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--encoders", default="mfcc,chroma")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--no-fixed-cost",
        dest="fixed_cost",
        action="store_false",
        help="skip the runs on 5 one-second files that measure what each side costs at no audio",
    )
    parser.add_argument("--data", type=Path, help="data folder [default: $MUSICBENCH_HOME/perf/baselines-...]")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from benchmark.config import musicbench_home

    minutes = args.files * args.seconds / 60
    home = musicbench_home() / "perf"
    datasets = {
        "big": build_data(args.data or home / f"baselines-{args.files}x{args.seconds:g}s", args.files, args.seconds)
    }
    if args.fixed_cost:
        datasets["tiny"] = build_data(home / "baselines-5x1s", 5, 1.0)
    sizes = {"big": minutes, "tiny": 5 / 60}
    refs, targets = datasets["big"]
    encoders = [e for e in args.encoders.split(",") if e]
    print(
        f"data: {args.files} files × {args.seconds:g} s = {minutes:.1f} min of {RATE} Hz {CHANNELS}-ch 16-bit WAV "
        f"({len(list(refs.glob('*.wav')))} refs, {len(list(targets.glob('*.wav')))} targets) in {refs.parent}",
        flush=True,
    )
    if minutes < 20:
        print("warning: less than the target's 20 minutes of audio", flush=True)

    with tempfile.TemporaryDirectory(prefix="mb-perf-") as tmp:
        tmp = Path(tmp)
        loop_script = tmp / "loop.py"
        loop_script.write_text(LOOP_SCRIPT)
        store = "sqlite:///" + str(tmp / "mlruns" / "mlflow.db")
        env = {**os.environ, "MLFLOW_TRACKING_URI": store}
        mb = musicbench_command()

        def loop(encoder: str, size: str, tag: str) -> tuple[float, float, str]:
            refs, targets = datasets[size]
            return timed(
                [
                    sys.executable,
                    str(loop_script),
                    encoder,
                    str(refs),
                    str(targets),
                    str(tmp / f"loop-{encoder}-{size}-{tag}.npz"),
                ],
                env,
                tmp,
            )

        def musicbench(encoder: str, size: str, tag: str) -> tuple[float, float, str]:
            refs, targets = datasets[size]
            return timed(
                mb
                + [
                    "run",
                    "--encoder",
                    encoder,
                    "--refs",
                    str(refs),
                    "--targets",
                    str(targets),
                    "--cache-dir",
                    str(tmp / f"cache-{encoder}-{size}-{tag}"),
                    "--metrics",
                    "none",
                    "--no-progress",
                    "--workers",
                    str(args.workers),
                    "--experiment",
                    "perf-baselines",
                ],
                env,
                tmp,
            )

        sides = {"loop": loop, "musicbench": musicbench}
        # (encoder, size, side) → [(wall, cpu)]; run ids of the timed big musicbench runs per encoder
        times: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
        runs: dict[str, list[str | None]] = {e: [] for e in encoders}
        cli: dict[str, list[float]] = {"--help": [], "encoders": []}
        loads = [os.getloadavg()[0]]
        for encoder in encoders:  # warm-up, not timed: page cache, the store, .pyc files
            for size in datasets:
                loop(encoder, size, "warm")
                musicbench(encoder, size, "warm")
        for r in range(args.rounds):
            for encoder in encoders:
                for size in datasets:
                    for side in ("loop", "musicbench") if r % 2 == 0 else ("musicbench", "loop"):
                        wall, cpu, out = sides[side](encoder, size, str(r))
                        times.setdefault((encoder, size, side), []).append((wall, cpu))
                        if side == "musicbench" and size == "big":
                            runs[encoder].append(run_id(out))
            for name, command in (("--help", mb + ["--help"]), ("encoders", mb + ["encoders"])):
                cli[name].append(timed(command, env, tmp)[0])
            loads.append(os.getloadavg()[0])
            last = {(e, side): times[e, "big", side][-1][0] for e in encoders for side in sides}
            print(
                f"round {r + 1}: "
                + ", ".join(
                    f"{e} loop {last[e, 'loop']:.2f} s / musicbench {last[e, 'musicbench']:.2f} s" for e in encoders
                )
                + f"; --help {cli['--help'][-1]:.2f} s, encoders {cli['encoders'][-1]:.2f} s (load {loads[-1]:.1f})",
                flush=True,
            )

        def median(encoder: str, size: str, side: str, what: int) -> float:
            return statistics.median(t[what] for t in times[encoder, size, side])

        print(
            f"\n{minutes:.1f} min of audio in {args.files} files; {args.rounds} interleaved rounds; "
            f"1-min load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores\n"
        )
        print(
            "| encoder | loop s | musicbench s | ratio loop/musicbench | target | verdict | CPU s loop / musicbench "
            "| 2-core ceiling 2·loop/CPU(musicbench) | embeddings vs loop | pipeline s: hash / embed / retrieve / "
            "total |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for encoder in encoders:
            pairs = list(zip(times[encoder, "big", "loop"], times[encoder, "big", "musicbench"]))
            ratio = statistics.median(a[0] / b[0] for a, b in pairs)
            ceiling = statistics.median(2 * a[0] / b[1] for a, b in pairs)
            cosine, diff = compare_embeddings(
                tmp / f"loop-{encoder}-big-0.npz", tmp / f"cache-{encoder}-big-0", datasets["big"]
            )
            same = "same" if cosine >= 0.9999 else "DIFFERENT"
            logged = logged_timings(store, runs[encoder])
            phases = " / ".join(
                f"{logged[k]:.2f}"
                for k in ("hash_seconds", "embed_seconds", "retrieve_seconds", "total_seconds")
                if k in logged
            )
            walls = f"{median(encoder, 'big', 'loop', 0):.2f} | {median(encoder, 'big', 'musicbench', 0):.2f}"
            verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
            print(
                f"| {encoder} | {walls} | {ratio:.2f} | ≥ {TARGET_RATIO} | {verdict} | "
                f"{median(encoder, 'big', 'loop', 1):.1f} / {median(encoder, 'big', 'musicbench', 1):.1f} | "
                f"{ceiling:.2f} | {same} (min cosine {cosine:.6f}, max abs diff {diff:.2g}) | {phases} |"
            )
        for name, values in cli.items():
            value = statistics.median(values)
            print(
                f"| musicbench {name} | | {value:.2f} | | < {TARGET_CLI_SECONDS:g} s | "
                f"{'PASS' if value < TARGET_CLI_SECONDS else 'FAIL'} | | | | |"
            )
        if not args.fixed_cost:
            return
        print(
            "\nWhat a run costs at (almost) no audio (median wall s on 5 × 1 s files), what each side pays per "
            "minute of audio ((big − tiny) / minutes; musicbench's is noisy: a difference of two ~15 s runs), the "
            "ratio that leaves as the audio grows, and the audio 1.9× needs at these costs, and in the best case "
            "(musicbench's cost per minute half the loop's: a perfect 2-core split):\n"
        )
        print(
            "| encoder | fixed s loop / musicbench | s per min of audio loop / musicbench | ratio as audio → ∞ | "
            "minutes for 1.9× | minutes for 1.9×, best case |"
        )
        print("|---|---|---|---|---|---|")

        def minutes_for(fixed: dict[str, float], loop_rate: float, mb_rate: float) -> str:
            # (F_loop + p_loop·m) / (F_mb + p_mb·m) = 1.9  ⇔  m = (1.9·F_mb − F_loop) / (p_loop − 1.9·p_mb)
            gap = loop_rate - TARGET_RATIO * mb_rate
            if gap <= 0:
                return "never"
            needed = (TARGET_RATIO * fixed["musicbench"] - fixed["loop"]) / gap
            return f"{needed:,.0f} ({needed / 60:.0f} h)"

        for encoder in encoders:
            fixed = {side: median(encoder, "tiny", side, 0) for side in sides}
            rate = {
                side: (median(encoder, "big", side, 0) - fixed[side]) / (sizes["big"] - sizes["tiny"]) for side in sides
            }
            limit = rate["loop"] / rate["musicbench"] if rate["musicbench"] > 0 else float("inf")
            print(
                f"| {encoder} | {fixed['loop']:.2f} / {fixed['musicbench']:.2f} | {rate['loop']:.3f} / "
                f"{rate['musicbench']:.3f} | {limit:.2f} | {minutes_for(fixed, rate['loop'], rate['musicbench'])} | "
                f"{minutes_for(fixed, rate['loop'], rate['loop'] / 2)} |"
            )


if __name__ == "__main__":
    main()

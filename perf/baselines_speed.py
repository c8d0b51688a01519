"""Issue 11, targets 3 and 8: weight-free baselines against a file-by-file loop, and the CLI's start-up.

Whole-process wall time, side by side, of

* **the loop**: one script that, for each file, runs ``librosa.load(path, sr=22050, mono=True)`` and the features
  (MFCC: 20 coefficients without the 0th, as musicbench's level-independent ``mfcc``; chroma: ``chroma_stft``),
  takes ``[mean, std]`` over frames, then the cosine top-5 of the targets against the references — one file at a
  time, as the issue names it;
* **musicbench**: ``musicbench run --encoder E --metrics none --no-progress`` on the same two folders, start-up,
  store set-up, hashing, embedding, retrieval, MLflow recording (params, tags, metrics, dataset, tables, figures)
  and exit included.

Both are subprocesses, timed in interleaved rounds (the order alternates each round), after one untimed warm-up of
each (page cache, .pyc files, the sqlite store: a user's second run finds its store). Every musicbench run gets a
fresh, empty ``--cache-dir`` (a cold run: every file hashed, decoded and embedded). The verdict is the median over
rounds of the per-round ratio loop / musicbench (the machine may be shared: absolute times drift, ratios of the same
round much less). musicbench's embeddings, read back from its cache, must equal the loop's (exactly, or within 1e-5
of the largest value; the table says which).

Target 3: ratio ≥ 1.9 on ≥ 20 minutes of audio (the default catalogue is larger, see ``--files``: the issue allows
it, and a run's fixed cost — interpreter, MLflow, the store, the figures — is amortised the way a nightly run over a
real library amortises it). Target 8: ``musicbench --help`` and ``musicbench encoders`` under 2 s each (medians).

Data: generated (four tones with random phases plus noise), 44.1 kHz 16-bit stereo WAV, so both sides decode, mix
down and resample to 22.05 kHz as with real music files; one file in five is a target. Built once (deterministic)
under ``$MUSICBENCH_HOME/perf/``.

    python perf/baselines_speed.py [--files 120] [--seconds 30] [--rounds 5] [--encoders mfcc,chroma]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perf.common import MUSICBENCH, Target, print_table, work_dir  # noqa: E402  (after the sys.path set-up)

TARGET_RATIO = 1.9
TARGET_CLI_SECONDS = 2.0
MIN_MINUTES = 20
RATE, CHANNELS = 44100, 2
AGREEMENT = 1e-5  # largest |difference| allowed, relative to the largest |value| of the embedding

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
        m = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20)[1:]  # musicbench's mfcc: without the 0th (level)
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


def cpu_seconds() -> float:
    """CPU time (user + system) of every finished child process and its descendants (workers too)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds, stdout) of one run of ``command``, until its output is closed."""
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


def compare_embeddings(loop_npz: Path, cache_dir: Path, folders: tuple[Path, Path]) -> tuple[bool, float, int]:
    """(bit-identical?, largest |difference| relative to the embedding's largest |value|, files compared) between
    the loop's embeddings and musicbench's cached ones."""
    import numpy as np

    loop = np.load(loop_npz)
    by_name = dict(zip(loop["names"], loop["embeddings"]))
    cached = {p.stem: p for p in cache_dir.rglob("*.npy")}
    exact, worst, n = True, 0.0, 0
    for folder in folders:
        for path in sorted(folder.glob("*.wav")):
            mine = np.load(cached[hashlib.sha256(path.read_bytes()).hexdigest()])
            theirs = by_name[path.name].astype(np.float32)
            exact &= bool(np.array_equal(mine, theirs))
            worst = max(worst, float(np.max(np.abs(mine - theirs)) / max(float(np.max(np.abs(theirs))), 1e-30)))
            n += 1
    return exact, worst, n


def logged_timings(store: str, run_ids: list[str]) -> dict[str, float]:
    """Medians of the pipeline's own stage timings (logged as metrics) over the timed runs."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store)  # never through the environment: the caller's store stays its own
    runs = [client.get_run(r).data.metrics for r in run_ids if r]
    runs = [{k.removeprefix("timing/"): v for k, v in m.items()} for m in runs]  # logged as timing/<stage>_seconds
    keys = ("hash_seconds", "embed_seconds", "retrieve_seconds", "total_seconds")
    return {k: statistics.median(m[k] for m in runs) for k in keys if runs and all(k in m for m in runs)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=120, help="files in the catalogue (every fifth a target)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each file")
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved rounds (the median of their ratios is the verdict)"
    )
    parser.add_argument("--encoders", default="mfcc,chroma")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data", type=Path, help="data folder [default: $MUSICBENCH_HOME/perf/baselines-...]")
    return parser


def main(argv: list[str] | None = None) -> list[Target]:
    args = build_parser().parse_args(argv)

    minutes = args.files * args.seconds / 60
    refs, targets = build_data(
        args.data or work_dir(f"baselines-{args.files}x{args.seconds:g}s"), args.files, args.seconds
    )
    encoders = [e for e in args.encoders.split(",") if e]
    print(
        f"data: {args.files} files × {args.seconds:g} s = {minutes:.1f} min of {RATE} Hz {CHANNELS}-ch 16-bit WAV "
        f"({len(list(refs.glob('*.wav')))} refs, {len(list(targets.glob('*.wav')))} targets) in {refs.parent}",
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="mb-perf-") as tmp:
        tmp = Path(tmp)
        loop_script = tmp / "loop.py"
        loop_script.write_text(LOOP_SCRIPT)
        store = "sqlite:///" + str(tmp / "mlruns" / "mlflow.db")
        env = {**os.environ, "MLFLOW_TRACKING_URI": store}
        mb = [MUSICBENCH] if Path(MUSICBENCH).exists() else [sys.executable, "-m", "benchmark.cli"]

        def loop(encoder: str, tag: str) -> tuple[float, float, str]:
            out = tmp / f"loop-{encoder}-{tag}.npz"
            return timed([sys.executable, str(loop_script), encoder, str(refs), str(targets), str(out)], env, tmp)

        def musicbench(encoder: str, tag: str) -> tuple[float, float, str]:
            return timed(
                [
                    *mb,
                    "run",
                    "--encoder",
                    encoder,
                    "--refs",
                    str(refs),
                    "--targets",
                    str(targets),
                    "--cache-dir",
                    str(tmp / f"cache-{encoder}-{tag}"),
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
        times: dict[tuple[str, str], list[tuple[float, float]]] = {}  # (encoder, side) → [(wall, cpu)] per round
        runs: dict[str, list[str | None]] = {e: [] for e in encoders}
        cli: dict[str, list[float]] = {"--help": [], "encoders": []}
        loads = [os.getloadavg()[0]]
        for encoder in encoders:  # warm-up, not timed: page cache, .pyc files, the store
            loop(encoder, "warm")
            musicbench(encoder, "warm")
        for r in range(args.rounds):
            for encoder in encoders:
                for side in ("loop", "musicbench") if r % 2 == 0 else ("musicbench", "loop"):
                    wall, cpu, out = sides[side](encoder, str(r))
                    times.setdefault((encoder, side), []).append((wall, cpu))
                    if side == "musicbench":
                        runs[encoder].append(run_id(out))
            for name, command in (("--help", [*mb, "--help"]), ("encoders", [*mb, "encoders"])):
                cli[name].append(timed(command, env, tmp)[0])
            loads.append(os.getloadavg()[0])
            print(
                f"round {r + 1}: "
                + ", ".join(
                    f"{e} loop {times[e, 'loop'][-1][0]:.2f} s / musicbench {times[e, 'musicbench'][-1][0]:.2f} s"
                    for e in encoders
                )
                + f"; --help {cli['--help'][-1]:.2f} s, encoders {cli['encoders'][-1]:.2f} s (load {loads[-1]:.1f})",
                flush=True,
            )

        print(
            f"\n{minutes:.1f} min of audio in {args.files} files; {args.rounds} interleaved rounds; "
            f"1-min load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores\n"
        )
        print(
            "| encoder | loop s | musicbench s | ratio (median of rounds) | target | verdict | CPU s loop / musicbench "
            "| embeddings vs loop | musicbench stages s: hash / embed / retrieve / pipeline total |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        targets_out = []
        for encoder in encoders:
            pairs = list(zip(times[encoder, "loop"], times[encoder, "musicbench"]))
            ratio = statistics.median(a[0] / b[0] for a, b in pairs)
            exact, worst, n = compare_embeddings(
                tmp / f"loop-{encoder}-0.npz", tmp / f"cache-{encoder}-0", (refs, targets)
            )
            agree = exact or worst <= AGREEMENT
            agreement = f"{'identical' if exact else f'max rel. diff {worst:.1e}'} ({n} files)"
            logged = logged_timings(store, runs[encoder])
            stages = " / ".join(
                f"{logged[k]:.2f}"
                for k in ("hash_seconds", "embed_seconds", "retrieve_seconds", "total_seconds")
                if k in logged
            )
            median = {side: statistics.median(t[0] for t in times[encoder, side]) for side in sides}
            cpu = {side: statistics.median(t[1] for t in times[encoder, side]) for side in sides}
            passed = ratio >= TARGET_RATIO and agree and minutes >= MIN_MINUTES
            print(
                f"| {encoder} | {median['loop']:.2f} | {median['musicbench']:.2f} | {ratio:.2f} | ≥ {TARGET_RATIO} | "
                f"{'PASS' if passed else 'FAIL'} | {cpu['loop']:.1f} / {cpu['musicbench']:.1f} | {agreement} | "
                f"{stages} |"
            )
            targets_out.append(
                Target(
                    f"3: {encoder} cold run vs file-by-file loop (≥ {TARGET_RATIO}×, {minutes:.0f} min)",
                    f"{ratio:.2f}×",
                    passed,
                    f"loop {median['loop']:.1f} s, musicbench {median['musicbench']:.1f} s, median of "
                    f"{args.rounds} rounds; embeddings {agreement}"
                    + ("" if minutes >= MIN_MINUTES else f"; under {MIN_MINUTES} min of audio"),
                )
            )
        for name, values in cli.items():
            value = statistics.median(values)
            print(
                f"| musicbench {name} | | {value:.2f} | | < {TARGET_CLI_SECONDS:g} s | "
                f"{'PASS' if value < TARGET_CLI_SECONDS else 'FAIL'} | | | |"
            )
            targets_out.append(
                Target(
                    f"8: musicbench {name} (< {TARGET_CLI_SECONDS:g} s)",
                    f"{value:.2f} s",
                    value < TARGET_CLI_SECONDS,
                    f"median of {len(values)}",
                )
            )
    return targets_out


if __name__ == "__main__":
    rows = main()
    if rows:
        print_table(rows)

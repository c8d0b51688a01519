"""Per-encoder CPU throughput per worker and peak memory on the demo set (neural encoders at random init).

Each encoder runs in its own subprocess (so peak RSS is its own) with ``--threads`` compute threads (default 1:
one worker = one core, as a Ray actor with ``num_cpus=1`` gets): build it (random-init weights written to a temporary
folder for the neural ones), then embed the first N demo target files two ways:

* ``embed``: decode excluded — the files decoded at the encoder's sample rate first, then cut with its window policy
  and embedded in batches, as the harness does;
* ``file``: the whole per-file path of a worker, ``benchmark.embedding_file.embed_one`` (decode → windows → embed),
  which is what each ``--engine ray`` actor runs per file, so this is the number a cluster estimate starts from.

Reports audio seconds per wall second of each and the process's peak RSS, and the load average (the machine is
shared: absolute numbers drift with it). docs/SCALING.md turns these into cluster estimates.

    python perf/encoder_throughput.py [--encoders mfcc,chroma,clap] [--files 6] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from perf.common import Target, print_table  # noqa: E402  (after the sys.path set-up above)

DEFAULT_ENCODERS = "mfcc,chroma,crepe,clap,clap-music,music2latent,muq"


def measure(name: str, n_files: int, batch_size: int) -> dict:
    """Runs inside the child process."""
    import numpy as np

    from benchmark.data import discover
    from benchmark.decoding import decode
    from benchmark.demo import build_demo
    from benchmark.embedding_file import embed_one
    from encoders import registry

    demo = build_demo(progress=False)
    files = discover(demo.targets, "target")[:n_files]
    cls = registry.encoder_class(name)
    with tempfile.TemporaryDirectory() as tmp:
        options = registry.EncoderOptions(batch_size=batch_size)
        if hasattr(cls, "write_random_weights"):
            options = registry.EncoderOptions(weights=str(cls.write_random_weights(Path(tmp))), batch_size=batch_size)
        started = time.perf_counter()
        encoder = registry.build(name, options)
        build_seconds = time.perf_counter() - started
        audio = [decode(f.path, encoder.sample_rate) for f in files]
        seconds = sum(len(a) for a in audio) / encoder.sample_rate
        encoder.embed_audio(audio[0][: encoder.sample_rate], batch_size)  # warm-up (lazy init, JIT)
        started = time.perf_counter()
        vectors = [encoder.embed_audio(a, batch_size) for a in audio]
        embed_seconds = time.perf_counter() - started
        started = time.perf_counter()
        outcomes = [embed_one(f, encoder, batch_size) for f in files]
        file_seconds = time.perf_counter() - started
    assert all(np.isfinite(v).all() for v in vectors)
    assert all(getattr(o, "rows", None) is not None for o in outcomes), outcomes
    return {
        "encoder": name,
        "dim": encoder.dim,
        "files": len(files),
        "audio_seconds": round(seconds, 1),
        "build_seconds": round(build_seconds, 1),
        "embed_seconds": round(embed_seconds, 2),
        "audio_seconds_per_second": round(seconds / embed_seconds, 1),
        "file_path_audio_seconds_per_second": round(seconds / file_seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "threads": int(os.environ.get("OMP_NUM_THREADS", "0") or 0),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoders", default=DEFAULT_ENCODERS)
    parser.add_argument("--files", type=int, default=6, help="demo target files to embed (12-20 s each)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="compute threads per worker (1 = one core)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser


def _child_env(threads: int) -> dict[str, str]:
    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")
    return {**os.environ, **dict.fromkeys(names, str(threads))}


def main(argv: list[str] | None = None) -> list[Target]:
    args = build_parser().parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.files, args.batch_size)))
        return []
    rows = []
    load_before = os.getloadavg()
    for name in [n for n in args.encoders.split(",") if n]:
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                name,
                "--files",
                str(args.files),
                "--batch-size",
                str(args.batch_size),
            ],
            capture_output=True,
            text=True,
            env=_child_env(args.threads),
        )
        if done.returncode != 0:
            rows.append({"encoder": name, "error": done.stderr.strip().splitlines()[-1:]})
        else:
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    load_after = os.getloadavg()
    print(
        f"\nload average (1 min) before {load_before[0]:.1f}, after {load_after[0]:.1f}; {os.cpu_count()} cores; "
        f"{args.threads} thread(s) per worker"
    )
    print(
        "| encoder | files | audio s | build s | embed s | audio-s / s (embed) | audio-s / s (decode + embed) "
        "| peak RSS MB |\n|---|---|---|---|---|---|---|---|"
    )
    targets = []
    for row in rows:
        if "error" in row:
            print(f"| {row['encoder']} | error: {row['error']} | | | | | | |")
            targets.append(Target(f"throughput {row['encoder']}", "error", False, str(row["error"])))
            continue
        print(
            f"| {row['encoder']} | {row['files']} | {row['audio_seconds']} | {row['build_seconds']} | "
            f"{row['embed_seconds']} | {row['audio_seconds_per_second']} | "
            f"{row['file_path_audio_seconds_per_second']} | {row['peak_rss_mb']} |"
        )
        targets.append(
            Target(
                f"throughput {row['encoder']} per worker ({args.threads} thread)",
                f"{row['file_path_audio_seconds_per_second']} audio-s/s",
                True,  # informational: the input of docs/SCALING.md's estimates, not a promise
                f"embed only {row['audio_seconds_per_second']} audio-s/s, peak RSS {row['peak_rss_mb']} MB, "
                f"load {load_before[0]:.1f}-{load_after[0]:.1f}",
            )
        )
    print()
    print_table(targets)
    return targets


if __name__ == "__main__":
    main()

"""Per-encoder CPU throughput and peak memory on the demo set (neural encoders at random init).

Each encoder runs in its own subprocess (so peak RSS is its own): build it (random-init weights written to a
temporary folder for the neural ones), decode the first N demo files at its sample rate, cut them with its
window policy and embed them in batches, as the harness does. Reports audio seconds per wall second of the
embedding step (decode excluded) and the process's peak RSS.

    python perf/encoder_throughput.py [--encoders mfcc,chroma,crepe,clap,music2latent,muq] [--files 6]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from perf.common import Target, print_table  # noqa: E402  (after the sys.path set-up)

DEFAULT_ENCODERS = "mfcc,chroma,crepe,clap,clap-music,music2latent,muq"


def measure(name: str, n_files: int, batch_size: int) -> dict:
    """Runs inside the child process."""
    import numpy as np

    from benchmark.data import decode, discover
    from benchmark.demo import build_demo
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
    assert all(np.isfinite(v).all() for v in vectors)
    return {
        "encoder": name,
        "files": len(files),
        "audio_seconds": round(seconds, 1),
        "build_seconds": round(build_seconds, 1),
        "embed_seconds": round(embed_seconds, 2),
        "audio_seconds_per_second": round(seconds / embed_seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoders", default=DEFAULT_ENCODERS)
    parser.add_argument("--files", type=int, default=6, help="demo target files to embed (12-20 s each)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> list[Target]:
    """Informational rows (no target): each encoder's throughput and peak RSS."""
    args = build_parser().parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.files, args.batch_size)))
        return []
    rows = []
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
        )
        if done.returncode != 0:
            rows.append({"encoder": name, "error": done.stderr.strip().splitlines()[-1:]})
        else:
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print(
        "\n| encoder | files | audio s | build s | embed s | audio-s / s | peak RSS MB |\n|---|---|---|---|---|---|---|"
    )
    for row in rows:
        if "error" in row:
            print(f"| {row['encoder']} | error: {row['error']} | | | | | |")
        else:
            print(
                f"| {row['encoder']} | {row['files']} | {row['audio_seconds']} | {row['build_seconds']} | "
                f"{row['embed_seconds']} | {row['audio_seconds_per_second']} | {row['peak_rss_mb']} |"
            )
    return [
        Target(
            f"info: {row['encoder']} embedding throughput",
            "error" if "error" in row else f"{row['audio_seconds_per_second']} audio-s/s",
            "error" not in row,
            f"{row['error']}"
            if "error" in row
            else f"{row['files']} demo files, {row['audio_seconds']} s of audio, peak RSS {row['peak_rss_mb']} MB, "
            f"build {row['build_seconds']} s",
            info="error" not in row,  # an encoder that cannot run at all is a failure
        )
        for row in rows
    ]


if __name__ == "__main__":
    rows = main()
    if rows:
        print_table(rows)

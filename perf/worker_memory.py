"""A worker's freed memory kept for its next file (``parallel.keep_freed_memory``), against glibc's defaults.

Each side is a fresh interpreter that embeds the same files one after another with ``mfcc`` (``embed_one``, what a
worker does per file: decode 44.1 kHz stereo, resample, MFCC statistics) after one untimed file; the two sides run
in interleaved rounds and the best time of each is kept. Printed: seconds, CPU seconds (user / system) and minor page
faults per side, and the ratio. Data: the generated catalogue of ``baselines_speed.py`` (its references).

    .venv/bin/python perf/worker_memory.py [--files 60] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perf.common import Target, print_table, work_dir  # noqa: E402  (after the sys.path set-up)

#: one side, in a fresh interpreter: argv = "kept" | "default", the folder, the number of files
CHILD = """\
import json, resource, sys, time
from pathlib import Path
from benchmark.parallel import keep_freed_memory
if sys.argv[1] == "kept":
    assert keep_freed_memory()
from benchmark.data import AudioFile
from benchmark.embedding_file import embed_one
from encoders.registry import EncoderOptions, build
encoder = build("mfcc", EncoderOptions())
files = [AudioFile(key=p.name, path=p) for p in sorted(Path(sys.argv[2]).glob("*.wav"))[: int(sys.argv[3]) + 1]]
embed_one(files[0], encoder, 8)
before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for item in files[1:]:
    embed_one(item, encoder, 8)
seconds, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": seconds, "user": after.ru_utime - before.ru_utime,
                  "system": after.ru_stime - before.ru_stime, "faults": after.ru_minflt - before.ru_minflt}))
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    return parser


def main(argv: list[str] | None = None) -> list[Target]:
    args = build_parser().parse_args(argv)
    from perf.baselines_speed import build_data

    refs, _ = build_data(work_dir("baselines-120x30s"), 120, 30.0)
    best: dict[str, dict] = {}
    for r in range(args.rounds):
        for side in ("kept", "default") if r % 2 == 0 else ("default", "kept"):
            done = subprocess.run(
                [sys.executable, "-c", CHILD, side, str(refs), str(args.files)],
                capture_output=True,
                text=True,
                cwd=ROOT,
                check=True,
            )
            result = json.loads(done.stdout.splitlines()[-1])
            if side not in best or result["seconds"] < best[side]["seconds"]:
                best[side] = result
    for side, result in best.items():
        print(
            f"{side:>8}: {result['seconds']:.2f} s for {args.files} files of 30 s (CPU user {result['user']:.2f} s, "
            f"system {result['system']:.2f} s), {result['faults']} minor page faults"
        )
    ratio = best["default"]["seconds"] / best["kept"]["seconds"]
    return [
        Target(
            "info: mfcc per file, freed memory kept vs glibc's defaults",
            f"{ratio:.2f}×",
            True,
            f"{best['kept']['seconds']:.2f} s vs {best['default']['seconds']:.2f} s for {args.files} × 30 s, best of "
            f"{args.rounds}; page faults {best['kept']['faults']} vs {best['default']['faults']}",
            info=True,
        )
    ]


if __name__ == "__main__":
    print_table(main())

"""CLAP throughput against the report's own loop, the bf16 opt-in, and a warm re-run (issue 11 targets 1, 2, 4).

The loop is written the way the report's code worked, in one script (``--loop``): per file ``librosa.load(sr=48000,
mono=True)``, one public-API call ``CLAP_Module.get_audio_embedding_from_data`` on that file's 10 s windows
(autograd left on, as the library leaves it), mean-pool, then cosine top-5. It imports laion_clap as the report did
(with only the offline fixes that make that import work here) and builds ``CLAP_Module`` at random init (its own
constructor, offline) before ``load_ckpt``. The same random-init weights
(``musicbench random-weights clap``) are loaded with the library's own ``load_ckpt``; the windows are musicbench's
(10 s, hop 10 s: the card's ``WindowPolicy``), so the embeddings can be compared file by file.

musicbench runs with ``--precision fp32`` (must agree with the loop: cosine ≥ 0.9999 per file) and ``--precision bf16``
(must agree with musicbench's fp32: cosine ≥ 0.9999 per file), each on a fresh cache (cold), interleaved with the loop.
On a CPU without native bf16 (no AVX512-BF16/AMX) bf16 is emulated and several times slower than fp32, so by default
it is then run once, to show it, instead of in every round.

    python perf/clap_speed.py [--files 8] [--seconds 30] [--rounds 5] [--bf16-rounds N] [--warm-minutes 60]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from perf.common import MUSICBENCH, PYTHON, Target, print_table, timed, work_dir, write_files  # noqa: E402


def loop(weights: str, folder: str, out: str) -> None:
    """The report-style loop (runs in its own process)."""
    import librosa
    import numpy as np
    import soundfile

    from encoders.clap import ClapEncoder, _build_clap_module
    from encoders.runtime import import_laion_clap

    # `import laion_clap` as the report did, with only what makes it importable offline here (runtime's torchvision
    # and tokenizer fixes), not musicbench's deferral of scikit-learn (runtime.LAION_CLAP_DEFERRED)
    import_laion_clap(deferred=())

    model = _build_clap_module("HTSAT-tiny", "cpu")  # the library's CLAP_Module (random init), built offline
    model.load_ckpt(weights)
    paths = sorted(Path(folder).rglob("*.wav"))
    embeddings = {}
    for path in paths:
        y, _ = librosa.load(path, sr=48000, mono=True)
        # librosa sizes its output as ceil(n × 48000 / sr) in floating point: one sample too many for most lengths
        # (30 s at 44.1 kHz gives 1,440,001). Keep the exact length, so that the windows are musicbench's.
        info = soundfile.info(str(path))
        y = y[: round(info.frames * 48000 / info.samplerate)]
        windows = ClapEncoder.card.window.segment(y, 48000)  # musicbench's windows: 10 s, hop 10 s
        vectors = model.get_audio_embedding_from_data(x=windows, use_tensor=False)
        embeddings[str(path)] = np.asarray(vectors, dtype=np.float64).mean(axis=0)
    refs = [p for p in embeddings if "/refs/" in p]
    queries = [p for p in embeddings if "/targets/" in p]
    r = np.stack([embeddings[p] for p in refs])
    q = np.stack([embeddings[p] for p in queries])
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    np.argsort(-(q @ r.T), axis=1)[:, :5]
    np.savez(out, paths=np.array(list(embeddings)), vectors=np.stack(list(embeddings.values())))


def musicbench_embeddings(cache: Path, weights: str, paths: list[str], precision: str = "fp32"):
    """musicbench's cached embeddings of ``paths`` (read through the cache's own identity)."""
    import numpy as np

    from benchmark.cache import ArrayCache
    from benchmark.data import content_hash
    from encoders import registry

    options = registry.EncoderOptions(weights=weights, precision=precision)
    identity = registry.encoder_class("clap").identity_for(options)
    store = ArrayCache(cache, {"kind": "embedding", **identity})
    return np.stack([store.get(content_hash(Path(p))) for p in paths])


def _cosines(a, b):
    import numpy as np

    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def _native_bf16() -> bool:
    """Whether this machine computes bf16 natively (a CPU with AVX512-BF16/AMX; the script runs on the CPU)."""
    import torch

    from encoders.pretrained import native_bf16

    return native_bf16(torch.device("cpu"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians are compared)")
    parser.add_argument(
        "--bf16-rounds",
        type=int,
        default=None,
        help="rounds that include the bf16 run [default: --rounds on a machine with native bf16, else 1: emulated "
        "bf16 is several times slower than fp32, so one run shows it]",
    )
    parser.add_argument("--warm-minutes", type=float, default=60.0)
    return parser


def main(argv: list[str] | None = None) -> list[Target]:
    args = build_parser().parse_args(argv)
    import numpy as np

    native = _native_bf16()
    bf16_rounds = args.bf16_rounds if args.bf16_rounds is not None else (args.rounds if native else 1)
    data = work_dir(f"clap-{args.files}x{args.seconds:g}-distinct")  # (earlier data sets had targets = refs)
    half = args.files // 2
    write_files(data / "refs", args.files - half, args.seconds, 44100, channels=2, prefix="ref")
    write_files(data / "targets", half, args.seconds, 44100, channels=2, prefix="query", first_seed=args.files)
    weights_dir = work_dir("weights")
    weights = weights_dir / "clap" / "630k-audioset-best.pt"
    if not weights.exists():
        timed([MUSICBENCH, "random-weights", "clap", str(weights.parent)])
    targets: list[Target] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db"}
        # create the store first, so that no round pays its one-off table creation
        timed([PYTHON, "-c", "from benchmark.store import configure; configure('musicbench')"], env)
        counter = iter(range(10**6))

        def run(precision: str):
            def go():
                cache = tmp / f"cache-{precision}-{next(counter)}"  # a fresh cache: every run is cold
                seconds = timed(
                    [
                        MUSICBENCH,
                        "run",
                        "--encoder",
                        "clap",
                        "--weights",
                        str(weights),
                        "--refs",
                        str(data / "refs"),
                        "--targets",
                        str(data / "targets"),
                        "--metrics",
                        "none",
                        "--precision",
                        precision,
                        "--cache-dir",
                        str(cache),
                        "--no-progress",
                    ],
                    env,
                )
                (tmp / f"last-{precision}").write_text(str(cache))
                return seconds

            return go

        loop_out = tmp / "loop.npz"
        commands = {
            "loop": lambda: timed([PYTHON, __file__, "--loop", str(weights), str(data), str(loop_out)]),
            "fp32": run("fp32"),
            "bf16": run("bf16"),
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for round_ in range(max(args.rounds, bf16_rounds)):
            for name, command in commands.items():
                if round_ < (bf16_rounds if name == "bf16" else args.rounds):
                    times[name].append(command())
        medians = {name: statistics.median(values) for name, values in times.items() if values}
        reference = np.load(loop_out)
        paths = [str(p) for p in reference["paths"]]
        mine = {
            precision: musicbench_embeddings(
                Path((tmp / f"last-{precision}").read_text()), str(weights), paths, precision
            )
            for precision in medians
            if precision != "loop"
        }
        sizes = f"{args.files} × {args.seconds:g} s"
        for precision, wanted, goal, other, versus in (
            ("fp32", 1.3, "1: CLAP fp32 cold vs report loop", reference["vectors"], "loop"),
            ("bf16", 1.8, "2: CLAP --precision bf16 vs report loop", mine["fp32"], "fp32"),
        ):
            if precision not in mine:  # --bf16-rounds 0
                continue
            agree = float(_cosines(mine[precision], other).min())
            ratio = medians["loop"] / medians[precision]
            note = (
                ""
                if precision == "fp32" or native
                else "; needs bf16 hardware: AVX512_BF16/AMX or CUDA (this CPU emulates bf16)"
            )
            targets.append(
                Target(
                    f"{goal} (≥ {wanted}×, cosine ≥ 0.9999)",
                    f"{ratio:.2f}× (min cos to {versus} {agree:.6f})",
                    ratio >= wanted and agree >= 0.9999,
                    f"loop {medians['loop']:.1f} s, musicbench {medians[precision]:.1f} s (medians), {sizes}, "
                    f"{len(times[precision])} rounds{note}",
                )
            )
        if args.warm_minutes > 0:
            targets.append(warm_rerun(weights, args.warm_minutes, tmp))
    return targets


def warm_rerun(weights: Path, minutes: float, tmp: Path) -> Target:
    """Hash + embed stages, cold vs warm, on ``minutes`` of audio (target 4: ≥ 50×)."""
    from mlflow.tracking import MlflowClient

    files = max(2, int(minutes * 60 / 120))
    data = work_dir(f"warm-{files}x120-distinct")  # (an earlier data set had its target = a ref)
    write_files(data / "refs", files - 1, 120.0, 44100, channels=2, prefix="ref")
    write_files(data / "targets", 1, 120.0, 44100, channels=2, prefix="query", first_seed=files)
    uri = f"sqlite:///{tmp}/warm.db"
    stages = []
    for _ in range(2):
        timed(
            [
                MUSICBENCH,
                "run",
                "--encoder",
                "clap",
                "--weights",
                str(weights),
                "--refs",
                str(data / "refs"),
                "--targets",
                str(data / "targets"),
                "--metrics",
                "none",
                "--cache-dir",
                str(tmp / "warm-cache"),
                "--no-progress",
                "--experiment",
                "warm",
            ],
            {"MLFLOW_TRACKING_URI": uri},
        )
        import mlflow

        mlflow.set_tracking_uri(uri)
        client = MlflowClient()
        run = client.search_runs(
            [client.get_experiment_by_name("warm").experiment_id],
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )[0]
        timing = {k.removeprefix("timing/"): v for k, v in run.data.metrics.items()}  # logged as timing/<stage>
        stages.append(timing["hash_seconds"] + timing["embed_seconds"])
    ratio = stages[0] / max(stages[1], 1e-9)
    return Target(
        "4: warm re-run, hash + embed (≥ 50×)",
        f"{ratio:.0f}×",
        ratio >= 50,
        f"cold {stages[0]:.1f} s, warm {stages[1]:.2f} s, {files} × 120 s = {files * 2} min",
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--loop":
        loop(*sys.argv[2:5])
    else:
        rows = main()
        print_table(rows)
        print(json.dumps([row.__dict__ for row in rows]))

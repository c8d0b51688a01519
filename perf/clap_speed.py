"""CLAP throughput against the report's own loop, the bf16 opt-in, and a warm re-run (issue 11 targets 1, 2, 4).

The loop is written the way the report's code worked, in one script (``--loop``): per file ``librosa.load(sr=48000,
mono=True)``, one public-API call ``CLAP_Module.get_audio_embedding_from_data`` on that file's 10 s windows
(autograd left on, as the library leaves it), mean-pool, then cosine top-5. The same random-init weights
(``musicbench random-weights clap``) are loaded with the library's own ``load_ckpt``; the windows are musicbench's
(``encoders.clap.window_starts``), so the embeddings can be compared file by file.

    python perf/clap_speed.py [--files 8] [--seconds 30] [--rounds 3] [--warm-minutes 60]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from perf.common import MUSICBENCH, PYTHON, Target, interleaved, print_table, timed, work_dir, write_files  # noqa: E402


def loop(weights: str, folder: str, out: str) -> None:
    """The report-style loop (runs in its own process)."""
    import librosa
    import numpy as np

    from encoders.clap import CLIP_SAMPLES, _build_clap_module, window_starts

    model = _build_clap_module("HTSAT-tiny", "cpu")  # the library's CLAP_Module, built offline
    model.load_ckpt(weights)
    paths = sorted(Path(folder).rglob("*.wav"))
    embeddings = {}
    for path in paths:
        y, _ = librosa.load(path, sr=48000, mono=True)
        windows = (
            np.stack([y[s : s + CLIP_SAMPLES] for s in window_starts(len(y))]) if len(y) >= CLIP_SAMPLES else y[None]
        )
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


def main(argv: list[str] | None = None) -> list[Target]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warm-minutes", type=float, default=60.0)
    args = parser.parse_args(argv)
    import numpy as np

    data = work_dir(f"clap-{args.files}x{args.seconds:g}")
    half = args.files // 2
    write_files(data / "refs", args.files - half, args.seconds, 44100, channels=2, prefix="ref")
    write_files(data / "targets", half, args.seconds, 44100, channels=2, prefix="query")
    weights_dir = work_dir("weights")
    weights = weights_dir / "clap" / "630k-audioset-best.pt"
    if not weights.exists():
        timed([MUSICBENCH, "random-weights", "clap", str(weights.parent)])
    targets: list[Target] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db"}
        counter = iter(range(10**6))

        def run(precision: str):
            def go():
                cache = tmp / f"cache-{precision}-{next(counter)}"
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
        medians = interleaved(
            {
                "loop": lambda: timed([PYTHON, __file__, "--loop", str(weights), str(data), str(loop_out)]),
                "fp32": run("fp32"),
                "bf16": run("bf16"),
            },
            args.rounds,
        )
        reference = np.load(loop_out)
        paths = [str(p) for p in reference["paths"]]
        for precision, wanted, goal in (
            ("fp32", 1.3, "CLAP fp32 cold vs report loop"),
            ("bf16", 1.8, "CLAP --precision bf16 vs report loop"),
        ):
            mine = musicbench_embeddings(Path((tmp / f"last-{precision}").read_text()), str(weights), paths, precision)
            agree = float(_cosines(mine, reference["vectors"]).min())
            ratio = medians["loop"] / medians[precision]
            targets.append(
                Target(
                    f"{goal} (≥ {wanted}×, cosine ≥ 0.9999)",
                    f"{ratio:.2f}× (min cos {agree:.6f})",
                    ratio >= wanted and agree >= 0.9999,
                    f"loop {medians['loop']:.1f} s, musicbench {medians[precision]:.1f} s, "
                    f"{args.files} × {args.seconds:g} s, {args.rounds} rounds",
                )
            )
        if args.warm_minutes > 0:
            targets.append(warm_rerun(weights, args.warm_minutes, tmp))
    return targets


def warm_rerun(weights: Path, minutes: float, tmp: Path) -> Target:
    """Hash + embed stages, cold vs warm, on ``minutes`` of audio (target 4: ≥ 50×)."""
    from mlflow.tracking import MlflowClient

    files = max(2, int(minutes * 60 / 120))
    data = work_dir(f"warm-{files}x120")
    write_files(data / "refs", files - 1, 120.0, 44100, channels=2, prefix="ref")
    write_files(data / "targets", 1, 120.0, 44100, channels=2, prefix="query")
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
        stages.append(run.data.metrics["hash_seconds"] + run.data.metrics["embed_seconds"])
    ratio = stages[0] / max(stages[1], 1e-9)
    return Target(
        "warm re-run, hash + embed (≥ 50×)",
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

"""What CLI tests share: the options that point a run at a dataset."""

from __future__ import annotations

from pathlib import Path


def dataset_args(data: dict, cache: Path, *, metrics: str = "none", ground_truth: bool = True) -> list[str]:
    """``--refs``/``--targets`` (and ``--ground-truth``) of a test dataset (``tiny_dataset``-like dict), the
    metrics, a cache folder and no progress bars."""
    args = ["--refs", str(data["refs"]), "--targets", str(data["targets"])]
    if ground_truth:
        args += ["--ground-truth", str(data["ground_truth"])]
    return [*args, "--metrics", metrics, "--cache-dir", str(cache), "--no-progress"]

"""``--engine ray``: the embed stage's decode + embed as a Ray Data pipeline; everything else is the local path.

``embed_files`` (benchmark/embedding.py) still decides what to embed (cache hits are never sent), pools the window
embeddings, checks them, writes the cache, records failures and counts — it takes the outcomes from here instead
of from its own threads or worker processes (``embed_files(source=RayEngine.source)``). Ray does the rest:

    ray.data.from_items(files to embed)
      .map_batches(EmbedActor, compute=ActorPoolStrategy(size=--ray-actors), batch_size=--ray-batch-size,
                   num_gpus=--ray-num-gpus)            # each actor builds the encoder once
      .iter_rows()                                      # streamed back in order, cached as they arrive

Each actor calls ``embedding_file.embed_one`` — the single-machine per-file path (decode → windows → embed) — so a
file's embedding and failure record are those of the local engine. Results stream into the same
content-addressed cache as they arrive, so local and Ray runs share work and a killed Ray run resumes.

Where Ray runs: ``--ray-address`` or ``$RAY_ADDRESS`` (an existing cluster: every node needs musicbench installed
and the weights at the same path), else a local Ray started for the embed stage and shut down after it. A Ray
already initialised in this process (a test, a notebook) is used as it is and left running.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from encoders.base import Encoder

from .config import RunConfig
from .data import AudioFile
from .embedding_file import embed_one
from .extras import import_extra, installed

RAY_EXTRA = 'pip install -e ".[ray]"'


class EngineUnavailable(RuntimeError):
    """The engine cannot run here (Ray not installed, or not the resources asked for): a user error."""


def ray_available() -> bool:
    return installed("ray", "ray.data")


def _ray():
    return import_extra(EngineUnavailable, f"--engine ray needs Ray ({RAY_EXTRA})", "ray", "ray.data")


class EmbedActor:
    """What each Ray actor holds: the run's encoder, built once from its registry name and options."""

    def __init__(self, name: str, options, identity: dict, batch_size: int):
        from encoders import registry

        self.encoder = registry.build(name, options)
        self.encoder.load_model()  # once per actor, before any file: an unusable model fails the actor, not files
        if self.encoder.cache_identity() != identity:  # e.g. other weights at the same path on this node
            raise RuntimeError(
                f"the encoder built on this Ray worker differs from the driver's: {self.encoder.cache_identity()} "
                f"!= {identity}"
            )
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outcomes = [
            pickle.dumps(embed_one(AudioFile(Path(path), str(key)), self.encoder, self.batch_size))
            for path, key in zip(batch["path"], batch["key"])
        ]
        out = np.empty(len(outcomes), dtype=object)
        out[:] = outcomes
        return {"position": np.asarray(batch["position"]), "outcome": out}


class RayEngine:
    """The Ray side of one embed stage: connected (or a local Ray started) on enter, what it started shut down
    on exit; ``source`` is what ``embed_files(source=...)`` takes."""

    def __init__(self, config: RunConfig, encoder: Encoder, encoder_options):
        self.config, self.encoder, self.encoder_options = config, encoder, encoder_options
        self.started = False

    def __enter__(self):
        ray = _ray()
        if not ray.is_initialized():
            address = self.config.ray.address or os.environ.get("RAY_ADDRESS") or None
            if address:
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
            else:
                ray.init(
                    num_cpus=max(self.config.ray.actors, self.config.workers),
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level=logging.WARNING,
                )
            self.started = True
        gpus = self.config.ray.num_gpus
        if gpus and ray.cluster_resources().get("GPU", 0) < gpus:
            self.__exit__(None, None, None)
            raise EngineUnavailable(
                f"--ray-num-gpus {gpus:g}: the Ray cluster has {ray.cluster_resources().get('GPU', 0):g} GPUs"
            )
        return self.source

    def __exit__(self, *exc_info) -> None:
        if self.started:
            import ray

            ray.shutdown()
            self.started = False

    def source(self, todo: list[AudioFile]) -> Iterator[tuple[AudioFile, object]]:
        """``(file, embed_one(file))`` for every file of ``todo``, in order, as the actors finish them."""
        import ray

        options = self.config.ray
        n_blocks = max(1, math.ceil(len(todo) / options.batch_size))
        context = ray.data.DataContext.get_current()
        saved = (context.execution_options.preserve_order, context.enable_progress_bars)
        context.execution_options.preserve_order = True  # failures are listed in the local engine's order
        context.enable_progress_bars = False  # embed_files shows its own
        data_logger = logging.getLogger("ray.data")
        level = data_logger.level
        data_logger.setLevel(logging.ERROR)  # no plan / "execution finished" lines between the run's own output
        try:
            dataset = ray.data.from_items(
                [{"position": i, "path": str(item.path), "key": item.key} for i, item in enumerate(todo)],
                override_num_blocks=n_blocks,
            ).map_batches(
                EmbedActor,
                fn_constructor_kwargs={
                    "name": self.config.encoder,
                    "options": self.encoder_options,
                    "identity": self.encoder.cache_identity(),
                    "batch_size": self.config.batch_size,
                },
                batch_size=options.batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=min(options.actors, n_blocks)),
                **({"num_gpus": options.num_gpus} if options.num_gpus else {}),
            )
            for row in dataset.iter_rows():
                yield todo[int(row["position"])], pickle.loads(row["outcome"])  # noqa: S301 - our own actors
        finally:
            context.execution_options.preserve_order, context.enable_progress_bars = saved
            data_logger.setLevel(level)

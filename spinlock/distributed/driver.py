"""Sharded generation on Ray: plan → skip complete shards → actor pool → merge.

``generate(cfg, out)`` is the one executor behind ``spinlock generate`` and ``spinlock run``, on a laptop
(embedded Ray) and on a cluster (``--address`` / ``RAY_ADDRESS`` / ``ray job submit``) alike. Rerunning
it on the same ``out`` resumes: complete shards are kept, partial or corrupt ones regenerated, and the
result is identical to an uninterrupted run because the shard plan depends only on the config.

``out`` is a local or shared (NFS, PVC) folder, or an object-store URI (``s3://bucket/prefix``); see
:mod:`spinlock.storage.remote` for how shards are staged, uploaded and merged in that case.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import ray
import torch

from spinlock.config.loading import config_hash
from spinlock.config.models import RunConfig
from spinlock.distributed import cluster
from spinlock.distributed.cluster import PoolShape, pool_shape, ray_session
from spinlock.distributed.scheduler import PoolReport, ShardScheduler
from spinlock.errors import SpinlockError
from spinlock.generate import (
    ShardSpec,
    check_runnable,
    pending_shards,
    plan_shards,
    prepare_output,
    remove_temporaries,
)
from spinlock.storage.layout import (
    CONFIG_FILE,
    DATASET_FILE,
    FEATURES_DIR,
    SHARDS_DIR,
    parquet_path,
    shard_name,
    shard_path,
)
from spinlock.storage.merge import merge_shards
from spinlock.storage.remote import RemoteStore, is_remote
from spinlock.storage.shard import ShardInfo
from spinlock.storage.zarrstore import TrajectoryArray, open_for_write

log = logging.getLogger(__name__)


def generate(
    cfg: RunConfig,
    out: str | os.PathLike[str],
    address: str | None = None,
    workers: int | None = None,
    show_progress: bool = True,
) -> Path:
    """Generate (or resume) the dataset of ``cfg`` into ``out`` and merge it; returns dataset.h5's path.

    ``address``: Ray cluster to join (``auto``, ``HOST:PORT``); without it and without ``RAY_ADDRESS`` an
    embedded Ray is started and stopped. ``workers`` caps the actor pool. For an object-store ``out`` the
    returned path is the driver's local staged copy (the same file is uploaded to ``out/dataset.h5``).
    Raises SpinlockError naming the shards that failed after ``distributed.max_retries`` retries.
    """
    with ray_session(address):
        return GenerationRun(cfg, out, workers=workers, show_progress=show_progress).execute()


class GenerationRun:
    """One invocation: output bookkeeping around a :class:`ShardScheduler` (needs a connected Ray)."""

    def __init__(self, cfg: RunConfig, out: str | os.PathLike[str], workers: int | None = None,
                 show_progress: bool = True, embedded: bool | None = None):
        self.cfg, self.workers, self.show_progress = cfg, workers, show_progress
        self.embedded = cluster.embedded() if embedded is None else embedded  # no autoscaler to add GPUs
        self.remote = RemoteStore(str(out)) if is_remote(out) else None
        self.local = self.remote.staging(cfg.distributed.staging_dir) if self.remote else Path(out)
        self.run_tag = f"{cfg.name}-{config_hash(cfg)}"
        self.scheduler: ShardScheduler | None = None
        self.report: PoolReport | None = None

    def execute(self) -> Path:
        cfg = self.cfg
        if self.remote is not None:
            self._pull_existing()
        prepare_output(cfg, self.local)
        if self.remote is not None:
            self.remote.upload(self.local / CONFIG_FILE, CONFIG_FILE)
        root = self.remote.url if self.remote is not None else str(self.local)
        verified: dict[int, ShardInfo] = {}  # complete shards as read by the scan: the merge reuses them
        done, todo = pending_shards(cfg, self.local, root=root, infos=verified)
        if self.remote is not None:
            self._reconcile(done, todo)
        if todo and cfg.storage.trajectories.format == "zarr":
            # create the array once, and refuse another run's, before any actor
            open_for_write(TrajectoryArray.of(cfg.simulation, cfg.storage, config_hash(cfg)), root)
        if todo:
            shape = pool_shape(cfg.distributed, len(todo), self.workers)
            self._precheck(shape)
            log.info("generate: %d of %d shard(s) to run (%d complete) on %s", len(todo),
                     len(done) + len(todo), len(done), shape.describe())
            self.scheduler = ShardScheduler(
                cfg, str(self.local), shape, self.run_tag,
                remote_url=self.remote.url if self.remote else None, show_progress=self.show_progress,
            )
            self.report = self.scheduler.run(todo, already_done=len(done))
            if self.remote is None:  # what attempts that died left (staged files: the next run's mirror)
                remove_temporaries(self.local, todo)
            if self.report.failed:
                raise SpinlockError(self.report.failure_message(cfg.distributed.max_retries + 1))
            ops = sum(s.operators for s in self.report.completed)
            log.info("generate: %d operator(s) in %.1f s (%.1f op/s), %d retried attempt(s)", ops,
                     self.report.seconds, ops / max(self.report.seconds, 1e-9), self.report.retries)
        else:
            log.info("generate: all %d shard(s) already complete", len(done))
        if self.remote is None:
            return merge_shards(cfg, self.local, shards=verified)
        self._pull_new()
        # virtual datasets cannot point into a bucket
        path = merge_shards(cfg, self.local, mode="copy", shards=verified)
        self.remote.publish(path, DATASET_FILE)  # records the object's tag: tokenize reuses this copy
        return path

    def _precheck(self, shape: PoolShape) -> None:
        """Settings the pool cannot run fail here, before any actor starts."""
        if shape.num_gpus > 0 and self.embedded and not ray.cluster_resources().get("GPU"):
            raise SpinlockError(
                f"distributed.gpus_per_actor is {shape.num_gpus:g} but this machine's Ray has no GPU and no"
                " autoscaler to add one; use gpus_per_actor: auto or 0, or join a GPU cluster with --address"
            )
        if shape.num_gpus == 0:
            if self.cfg.simulation.device == "cuda":
                raise SpinlockError(
                    "simulation.device is 'cuda' but the actor pool has no GPUs"
                    " (distributed.gpus_per_actor resolved to 0); set it to 1 or use device: auto"
                )
            check_runnable(self.cfg, torch.device("cpu"))

    # --- object-store output -----------------------------------------------------------------------

    def _pull_existing(self) -> None:
        """Mirror the bucket's config and shards into the staging folder (the bucket is the truth)."""
        store, local = self.remote, self.local
        store.ensure_bucket()
        (local / SHARDS_DIR).mkdir(parents=True, exist_ok=True)
        if store.exists(CONFIG_FILE):
            store.download(CONFIG_FILE, local / CONFIG_FILE)
        else:
            (local / CONFIG_FILE).unlink(missing_ok=True)
        published = store.listdir(SHARDS_DIR)
        for path in (local / SHARDS_DIR).iterdir():
            if path.name not in published:  # staged but never uploaded: not part of the run
                path.unlink()
        for name, size in published.items():
            path = local / SHARDS_DIR / name
            if not path.exists() or path.stat().st_size != size:
                store.download(f"{SHARDS_DIR}/{name}", path)

    def _reconcile(self, done: list[ShardSpec], todo: list[ShardSpec]) -> None:
        """Delete published shards found corrupt; publish feature tables rebuilt for complete shards."""
        published = self.remote.listdir(SHARDS_DIR)
        tables = self.remote.listdir(FEATURES_DIR)
        for spec in todo:
            if shard_name(spec.shard_id) in published:
                log.warning("%s in %s is not a complete shard of this run; regenerating it",
                            shard_name(spec.shard_id), self.remote.url)
                self.remote.remove(f"{SHARDS_DIR}/{shard_name(spec.shard_id)}")
        for spec in done:
            pq = parquet_path(self.local, spec.shard_id)
            if pq.name not in tables:
                self.remote.upload(pq, f"{FEATURES_DIR}/{pq.name}")

    def _pull_new(self) -> None:
        """Download the shards (and feature tables) generated on other nodes for the merge."""
        for spec in plan_shards(self.cfg):
            h5, pq = shard_path(self.local, spec.shard_id), parquet_path(self.local, spec.shard_id)
            if not h5.exists():
                self.remote.download(f"{SHARDS_DIR}/{h5.name}", h5)
            if not pq.exists():
                self.remote.download(f"{FEATURES_DIR}/{pq.name}", pq)

"""The generation actor: a thin Ray wrapper around :func:`spinlock.generate.run_shard`.

State (config, output location, torch threads, metrics) is built once in ``__init__``; each ``run``
call generates one whole shard, writes it itself (atomic tmp + rename in ``OUT/shards``, or staged and
uploaded for an object-store ``OUT``) and returns only the small :class:`ShardSummary`. The torch
device comes from ``torch.cuda.is_available()`` (via ``simulation.device: auto``), not from the Ray
resource, so a "GPU" node without CUDA still works.

``progress`` lives in its own concurrency group: the driver can ask how far the current shard is while
``run`` is busy, which drives the per-operator progress bar without an extra actor or queue.
"""

from __future__ import annotations

import time
from pathlib import Path

import ray
import torch

from spinlock.config.models import RunConfig
from spinlock.distributed.metrics import WorkerMetrics
from spinlock.generate import ShardSpec, ShardSummary, check_runnable, run_shard
from spinlock.storage.layout import FEATURES_DIR, SHARDS_DIR, parquet_path, shard_name, shard_path
from spinlock.storage.remote import RemoteStore


@ray.remote(concurrency_groups={"progress": 1})
class ShardWorker:
    """One generation actor; resources (``num_gpus``, ``num_cpus``) are set by the driver's ``options``."""

    def __init__(self, cfg: RunConfig, out: str, run_tag: str, actor: str, threads: int,
                 remote_url: str | None = None, driver_node: str | None = None):
        torch.set_num_threads(threads)
        check_runnable(cfg)  # e.g. bf16 on a node without CUDA: fail at creation, naming the setting
        self.cfg = cfg
        self.remote = None
        if remote_url is not None:
            self.remote = RemoteStore(remote_url)
            self.out = self.remote.staging(cfg.distributed.staging_dir)
            # on the driver's node the driver reads the staged files directly; elsewhere free the disk
            self.keep_local = driver_node == ray.get_runtime_context().get_node_id()
        else:
            self.out = Path(out)
        self.metrics = WorkerMetrics(run_tag, actor)
        self.shard: int | None = None
        self.done = 0

    def run(self, spec: ShardSpec) -> ShardSummary:
        """Generate shard ``spec`` (whole or not at all) and return its summary."""
        sim = self.cfg.simulation
        self.shard, self.done = spec.shard_id, 0
        last = time.perf_counter()

        def progress(n: int) -> None:
            nonlocal last
            now = time.perf_counter()
            self.done += n
            self.metrics.batch(n, n * sim.realizations * sim.steps, now - last)
            last = now

        try:
            root = self.remote.url if self.remote is not None else None  # Zarr trajectories go there
            summary = run_shard(self.cfg, spec, self.out, progress=progress, root=root)
            if self.remote is not None:
                self._publish(spec.shard_id)
            return summary
        finally:
            self.shard = None

    def _publish(self, shard_id: int) -> None:
        """Upload the shard and its feature table; the shard key is written last (it marks completion)."""
        local_h5, local_pq = shard_path(self.out, shard_id), parquet_path(self.out, shard_id)
        self.remote.upload(local_pq, f"{FEATURES_DIR}/{local_pq.name}")
        self.remote.upload(local_h5, f"{SHARDS_DIR}/{shard_name(shard_id)}")
        if not self.keep_local:
            local_h5.unlink()
            local_pq.unlink()

    @ray.method(concurrency_group="progress")
    def progress(self) -> tuple[int | None, int]:
        """(shard being generated or None, operators of it finished so far)."""
        return self.shard, self.done

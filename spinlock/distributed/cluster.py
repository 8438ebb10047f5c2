"""Connecting to Ray and sizing the generation actor pool from config and cluster capacity.

A command without ``--address`` (and without ``RAY_ADDRESS``) starts an embedded local Ray and shuts it
down at the end; with an address it joins that cluster and only disconnects. A Ray the caller already
initialised is used as is and left running.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import ray
from ray._private.state import state

from spinlock.config.distributed import DistributedConfig
from spinlock.errors import SpinlockError
from spinlock.logs import ray_output

log = logging.getLogger(__name__)

_embedded = False  # True while a ray_session of this process runs the Ray it started itself


@contextmanager
def ray_session(address: str | None = None) -> Iterator[bool]:
    """Use the running Ray, join ``address``/``RAY_ADDRESS``, or start (and later stop) a local one.

    Yields :func:`embedded` (nested sessions reuse the outer one).
    """
    global _embedded
    if ray.is_initialized():
        yield embedded()
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    try:
        with ray_output() as options:
            ray.init(address=address, **options)
    except (ConnectionError, ValueError, RuntimeError) as e:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        raise SpinlockError(f"could not connect to {where}: {e}") from None
    _embedded = address is None
    try:
        yield _embedded
    finally:
        _embedded = False
        ray.shutdown()  # stops a Ray we started; only disconnects from a cluster we joined


def embedded() -> bool:
    """Whether Ray is an embedded instance started by :func:`ray_session` (one machine, no autoscaler)."""
    return _embedded and ray.is_initialized()


def _autoscaler_max(resource: str) -> float:
    """Most of ``resource`` the autoscaler may provide: 0 when unknown (no autoscaler, or v1 without the
    record), ``math.inf`` when a node group has no upper bound.

    Ray has no public API for this; Ray Train V2 and Ray Data size their work from the same private
    record (``get_max_resources_from_cluster_config``), which reports an unbounded group as
    ``sys.maxsize``. That value is mapped to ``inf`` here so no caller mistakes it for a count.
    """
    limits = state.get_max_resources_from_cluster_config() or {}
    value = float(limits.get(resource, 0) or 0)
    return math.inf if value >= sys.maxsize else value


def cluster_capacity(resource: str) -> float:
    """Largest known amount of ``resource``: what is connected now or what the autoscaler can add
    (``inf`` for an autoscaler without an upper bound)."""
    return max(float(ray.cluster_resources().get(resource, 0.0)), _autoscaler_max(resource))


@dataclass(frozen=True)
class PoolShape:
    """How many actors to create and what each requests."""

    actors: int
    num_gpus: float
    num_cpus: float

    @property
    def torch_threads(self) -> int:
        return max(1, math.floor(self.num_cpus))

    def describe(self) -> str:
        kind = f"{self.num_gpus:g} GPU + {self.num_cpus:g} CPU" if self.num_gpus else f"{self.num_cpus:g} CPU"
        return f"{self.actors} actor(s) × {kind}"


def resolve_gpus(dist: DistributedConfig) -> float:
    """``gpus_per_actor`` with ``auto`` decided from the cluster (present or autoscalable GPUs)."""
    if dist.gpus_per_actor != "auto":
        return float(dist.gpus_per_actor)
    return 1.0 if cluster_capacity("GPU") > 0 else 0.0


def pool_shape(dist: DistributedConfig, shards: int, workers: int | None = None) -> PoolShape:
    """Actors for ``shards`` pending shards: min(shards, max_actors, --workers, capacity).

    Capacity is GPUs / gpus_per_actor for GPU actors, (CPUs - cpu_headroom) / cpus_per_actor for CPU
    actors (at least 1). When it is unknown (0, e.g. an autoscaling cluster with no GPU node yet and no
    readable autoscaler config), ``max_actors`` (or 1) actors are requested and their pending resource
    requests make the autoscaler add nodes.
    """
    if workers is not None and workers < 1:
        raise SpinlockError(f"--workers must be >= 1, got {workers}")
    gpus = resolve_gpus(dist)
    resource = "GPU" if gpus > 0 else "CPU"
    capacity = cluster_capacity(resource)
    if math.isinf(capacity):  # an autoscaler without max_workers: never one actor per shard
        if dist.max_actors:
            capacity = 0.0  # unknown: max_actors actors, whose requests make the autoscaler add nodes
        else:
            capacity = float(ray.cluster_resources().get(resource, 0.0))
            log.warning("the autoscaler has no upper bound on %s: sizing the pool from the %g connected;"
                        " set distributed.max_actors to let the autoscaler add nodes", resource, capacity)
    if gpus > 0:
        known = math.floor(capacity / gpus + 1e-9)
    else:
        cpus = capacity
        usable = cpus - dist.cpu_headroom if cpus - dist.cpu_headroom >= dist.cpus_per_actor else cpus
        known = max(1, math.floor(usable / dist.cpus_per_actor + 1e-9)) if cpus else 0
    if known > 0:
        n = min(known, dist.max_actors) if dist.max_actors else known
    else:
        n = dist.max_actors or 1
    if workers is not None:
        n = min(n, workers)
    return PoolShape(actors=max(1, min(n, shards)), num_gpus=gpus, num_cpus=dist.cpus_per_actor)

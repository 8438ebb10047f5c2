"""Distributed-execution section (read by ``spinlock.distributed``).

It says *how* shards are executed, not *what* is generated, so it is excluded from ``config_hash``:
changing it between a run and its resume (more actors, other GPU setting) keeps finished shards valid.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from spinlock.config.strict import Strict


class DistributedConfig(Strict):
    """Actor pool of the generation stage (docs/distributed.md explains sizing and autoscaling)."""

    gpus_per_actor: Literal["auto"] | float = "auto"
    """GPUs each generation actor requests, in [0, 1]: `0` runs CPU actors; `1` one actor per GPU; a
    fraction (e.g. `0.5`) packs several actors on one GPU. `auto` requests 1 GPU when the cluster has GPUs
    now *or* Ray publishes autoscaler limits that include GPUs, else 0. On an autoscaling cluster that
    starts without GPU nodes set `1` explicitly: the pending GPU request is what makes the autoscaler add
    GPU nodes (docs/distributed.md)."""
    cpus_per_actor: float = Field(1.0, gt=0, le=256)
    """CPUs each actor requests; torch in the actor uses `max(1, floor(cpus_per_actor))` threads."""
    max_actors: int | None = Field(None, ge=1)
    """Upper bound on concurrent actors (`spinlock generate --workers N` lowers it further). Unset: as
    many as the cluster can hold — its GPUs (or autoscaler maximum) divided by `gpus_per_actor`, or its
    CPUs minus `cpu_headroom` divided by `cpus_per_actor` — and never more than the shards to run.
    When the cluster's capacity is unknown (no GPU node yet, no published autoscaler limits) this many
    actors are requested (1 if unset), so set it on autoscaling clusters to the GPU nodes you want."""
    cpu_headroom: int = Field(1, ge=0)
    """CPUs a derived CPU-actor pool leaves unclaimed, so that Ray tasks (metrics, Parquet reads of a
    following tokenize stage) are never starved (ray-project/ray#44687). Not applied to `max_actors`."""
    max_retries: int = Field(2, ge=0, le=100)
    """Extra attempts per shard after it raised or its actor died; a shard failing `max_retries + 1`
    times is reported by name, the others still complete, and the run exits non-zero without merging."""
    staging_dir: str | None = None
    """Local folder on every node for shards of an object-store `--out` (`s3://`, `gs://`) before
    upload, and for the driver's copies used by the merge. Unset: `<system temp>/spinlock-staging`."""

    @field_validator("gpus_per_actor")
    @classmethod
    def _fraction_of_one_gpu(cls, v: str | float) -> str | float:
        # one actor drives one device (torch uses cuda:0 of what Ray assigns), so more than 1 buys nothing
        if v != "auto" and not 0 <= v <= 1:
            raise ValueError(f"must be 'auto' or a number in [0, 1], got {v}")
        return v

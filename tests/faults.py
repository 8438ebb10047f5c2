"""Deterministic fault injection into Ray workers (a worker setup hook), instead of timing a kill.

``ray.init(runtime_env=kill_order_runtime_env(folder))`` makes every worker obey *kill orders*: the
process about to commit shard file NAME dies (``os._exit``) with all its rows written, if it first
claims the order file ``folder/kill-NAME`` (renamed to ``kill-NAME.taken``, so exactly one attempt
dies). The hook patches the class attribute ``ShardWriter.commit``, which is looked up at call time; an
actor's module globals are pickled by value by Ray, so patching them would not reach the actor.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import ray

ORDERS_ENV = "SPINLOCK_TEST_ORDERS"


def obey_kill_orders() -> None:
    """Worker setup hook (runs in every Ray worker process before its first task)."""
    from spinlock.storage.shard import ShardWriter

    real = ShardWriter.commit

    def commit(self, extra_attrs=None):
        order = Path(os.environ[ORDERS_ENV]) / f"kill-{self.path.name}"
        try:
            os.rename(order, f"{order}.taken")  # atomic: exactly one attempt claims an order
        except FileNotFoundError:
            return real(self, extra_attrs)
        os._exit(1)

    ShardWriter.commit = commit


def kill_order_runtime_env(folder: Path) -> dict:
    """Job runtime env for ``ray.init``; sets ``ORDERS_ENV`` in this process (workers inherit it)."""
    os.environ[ORDERS_ENV] = str(folder)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # tests/ is not importable in workers
    return {"worker_process_setup_hook": obey_kill_orders}


def order_kill(folder: Path, shard_file: str) -> Path:
    """Order the next attempt at ``shard_file`` (e.g. ``shard-00001.h5``) to die; returns the taken marker."""
    (folder / f"kill-{shard_file}").touch()
    return folder / f"kill-{shard_file}.taken"

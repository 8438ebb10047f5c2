"""Deterministic fault injection into Ray workers, instead of timing a kill.

Generation shards (a worker setup hook):
``ray.init(runtime_env=kill_order_runtime_env(folder))`` makes every worker obey *kill orders*: the
process about to commit shard file NAME dies (``os._exit``) with all its rows written, if it first
claims the order file ``folder/kill-NAME`` (renamed to ``kill-NAME.taken``, so exactly one attempt
dies). The hook patches the class attribute ``ShardWriter.commit``, which is looked up at call time; an
actor's module globals are pickled by value by Ray, so patching them would not reach the actor.

Tokenizer training (a Ray Train loop): :func:`failing_train_loop` stands in for
``spinlock.distributed.train.train_loop_per_worker`` (monkeypatched on the driver) and raises
:class:`InjectedFault` once, at the start of an epoch, so Ray Train must restart the worker group.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
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


class InjectedFault(RuntimeError):
    """The failure :func:`failing_train_loop` raises."""


def failing_train_loop(order: Path, epoch: int) -> Callable[[dict], None]:
    """A Ray Train worker loop that runs the real one, except that the first attempt to start ``epoch``
    claims the order file ``order`` (renamed to ``order.taken``, exactly one rank and attempt) and
    raises :class:`InjectedFault`. Create ``order`` first; ``order.taken`` then says the fault fired."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # tests/ is not importable in workers

    def loop(config: dict) -> None:
        from spinlock.distributed import train  # the worker's own module: patching it reaches this process only

        real = train.train_model

        def train_model(model, settings, train_batches, *args, **kwargs):
            def batches(e: int):
                if e == epoch:
                    try:
                        os.rename(order, f"{order}.taken")
                    except FileNotFoundError:
                        pass
                    else:
                        raise InjectedFault(f"injected failure at the start of epoch {e}")
                return train_batches(e)

            return real(model, settings, batches, *args, **kwargs)

        train.train_model = train_model
        train.train_loop_per_worker(config)

    return loop

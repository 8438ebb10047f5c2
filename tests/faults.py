"""Deterministic fault injection into Ray workers (worker setup hooks), instead of timing a kill.

Generation shards (a worker setup hook):
``ray.init(runtime_env=kill_order_runtime_env(folder))`` makes every worker obey *kill orders*: the
process about to commit shard file NAME dies (``os._exit``) with all its rows written, if it first
claims the order file ``folder/kill-NAME`` (renamed to ``kill-NAME.taken``, so exactly one attempt
dies). The hook patches the class attribute ``ShardWriter.commit``, which is looked up at call time; an
actor's module globals are pickled by value by Ray, so patching them would not reach the actor.

Tokenizer training (a Ray Train loop): :func:`failing_train_loop` stands in for
``spinlock.distributed.train.train_loop_per_worker`` (monkeypatched on the driver) and raises
:class:`InjectedFault` once, at the start of an epoch, so Ray Train must restart the worker group.

``ray.init(runtime_env=park_runtime_env(folder))`` makes workers obey *park orders* instead: the worker
that claims one waits at that point (a shard's commit, a tokenizer checkpoint) and says on which node,
so that a test can lose that node with the work in flight (tests/test_node_loss.py).
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


# --- park orders: a worker waits at a known point, so that its node can be lost with work in flight ----------

PARK_ENV = "SPINLOCK_TEST_PARK"


def _park(name: str) -> bool:
    """If ``folder/park-NAME`` can be claimed: record where this process runs in ``parked-NAME`` and wait
    for ``release-NAME``. Returns whether it parked."""
    import json
    import time

    folder = Path(os.environ[PARK_ENV])
    order = folder / f"park-{name}"
    try:
        os.rename(order, f"{order}.taken")
    except FileNotFoundError:
        return False
    where = {"node_ip": ray.util.get_node_ip_address(), "pid": os.getpid()}
    (folder / f"parked-{name}.tmp").write_text(json.dumps(where))
    os.rename(folder / f"parked-{name}.tmp", folder / f"parked-{name}")
    while not (folder / f"release-{name}").exists():
        time.sleep(0.1)
    return True


def _after_import(patches: dict) -> None:
    """Call ``patches[name](module)`` once module ``name`` is imported (at once if it already is).

    Importing the patched modules in the setup hook itself would load torch and h5py into every worker
    process, Ray's own included: that made the tokenize stage three times slower on the 2-core machine.
    """
    import importlib.abc

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name not in patches:
                return None
            others = (f for f in sys.meta_path if f is not self and hasattr(f, "find_spec"))
            spec = next((s for f in others if (s := f.find_spec(name, path, target)) is not None), None)
            if spec is not None:
                load = spec.loader.exec_module

                def exec_module(module):
                    load(module)
                    patches[name](module)

                spec.loader.exec_module = exec_module
            return spec

    for name, patch in patches.items():
        if name in sys.modules:
            patch(sys.modules[name])
    sys.meta_path.insert(0, Finder())


def obey_park_orders() -> None:
    """Worker setup hook: park before a shard's commit (``park-shard-NNNNN.h5``; once released, the commit's
    outcome goes to ``done-shard-NNNNN.h5``) and before the tokenizer's checkpoint after epoch E
    (``park-epoch-E``)."""

    def patch_shard(module) -> None:
        commit = module.ShardWriter.commit

        def parking_commit(self, extra_attrs=None):
            parked = _park(self.path.name)
            outcome = "committed"
            try:
                commit(self, extra_attrs)
            except Exception as e:
                outcome = f"{type(e).__name__}: {e}"
                raise
            finally:
                if parked:
                    (Path(os.environ[PARK_ENV]) / f"done-{self.path.name}").write_text(outcome)

        module.ShardWriter.commit = parking_commit

    def patch_training(module) -> None:
        save = module.TrainState.save

        def parking_save(self, path):
            _park(f"epoch-{self.epoch}")
            save(self, path)

        module.TrainState.save = parking_save

    _after_import({"spinlock.storage.shard": patch_shard, "spinlock.encoding.training": patch_training})


def park_runtime_env(folder: Path) -> dict:
    """Job runtime env for ``ray.init`` on a cluster: the hook, and the orders folder for every node's workers."""
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    return {"worker_process_setup_hook": obey_park_orders, "env_vars": {PARK_ENV: str(folder)}}


def order_park(folder: Path, name: str) -> Path:
    """Order the next worker reaching ``name`` to park; returns the ``parked-NAME`` marker it will write."""
    (folder / f"park-{name}").touch()
    return folder / f"parked-{name}"

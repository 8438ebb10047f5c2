"""Dispatch shards to a pool of generation actors, with bounded retries and a live progress bar.

Each idle actor gets the next shard in plan order. A shard whose attempt raised, or whose actor died
(killed, out of memory, node lost), is put back at the head of the queue; a dead actor is replaced by a
fresh one. An actor is given shards only once it has started, so a replacement that cannot be placed
(its node is gone and the survivors' resources are taken) never holds a shard: the surviving actors
run it, and the replacement joins if a node comes (an autoscaler) or is dropped at the end. Shard files
are renamed into place only when complete, so a retried shard can never be duplicated or half-written.
After ``distributed.max_retries`` failed retries a shard is given up and reported with its last error
while every other shard still completes.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field

import ray
from ray.exceptions import RayActorError, RayError, RayTaskError
from tqdm.auto import tqdm

from spinlock.config.models import RunConfig
from spinlock.distributed.cluster import PoolShape
from spinlock.distributed.metrics import DriverMetrics
from spinlock.distributed.worker import ShardWorker
from spinlock.errors import SpinlockError
from spinlock.generate import ShardSpec, ShardSummary
from spinlock.storage.layout import shard_name

log = logging.getLogger(__name__)

POLL_S = 0.5  # how often the driver refreshes per-operator progress (one tiny RPC per busy actor)


@dataclass
class PoolReport:
    """Outcome of one pool run (summaries are in completion order)."""

    completed: list[ShardSummary] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)  # shard id -> last error
    retries: int = 0
    replaced_actors: int = 0
    seconds: float = 0.0  # pool wall time, actor start-up included
    startup_s: float = 0.0  # pool start → first shard started (actor start-up, scheduling latency)

    def failure_message(self, attempts: int) -> str:
        listed = "; ".join(f"{shard_name(k)}: {v}" for k, v in sorted(self.failed.items()))
        return (
            f"{len(self.failed)} shard(s) failed after {attempts} attempt(s) each and were not merged"
            f" ({len(self.completed)} other shard(s) completed; rerun the same command to retry): {listed}"
        )


def _last_line(err: BaseException) -> str:
    lines = [x for x in str(err).strip().splitlines() if x.strip()]
    return lines[-1].strip() if lines else type(err).__name__


def _error_text(err: BaseException) -> str:
    """One line naming the exception type and message (the remote traceback goes to the log)."""
    if isinstance(err, RayTaskError) and err.cause is not None:
        err = err.cause
    if isinstance(err, RayActorError):
        return f"actor died: {str(err).strip().splitlines()[0]}"
    return f"{type(err).__name__}: {_last_line(err)}"


class ShardScheduler:
    """Runs ``specs`` on ``shape.actors`` actors; ``actors`` and ``busy`` are live for observers/tests."""

    def __init__(self, cfg: RunConfig, out: str, shape: PoolShape, run_tag: str, *,
                 remote_url: str | None = None, show_progress: bool = True):
        self.cfg, self.out, self.shape, self.run_tag = cfg, out, shape, run_tag
        self.remote_url, self.show_progress = remote_url, show_progress
        self.metrics = DriverMetrics(run_tag)
        self.actors: list[ray.actor.ActorHandle] = []
        self.busy: dict[int, ShardSpec] = {}  # actor slot -> shard it is generating
        self._generation = 0

    def _new_actor(self, slot: int) -> ray.actor.ActorHandle:
        self._generation += 1
        return ShardWorker.options(
            num_cpus=self.shape.num_cpus, num_gpus=self.shape.num_gpus,
            max_restarts=0, max_task_retries=0,  # the scheduler retries, counted and bounded
        ).remote(self.cfg, self.out, self.run_tag, f"{slot}.{self._generation}", self.shape.torch_threads,
                 self.remote_url, ray.get_runtime_context().get_node_id())

    def run(self, specs: list[ShardSpec], already_done: int = 0) -> PoolReport:
        """Generate every shard of ``specs``; never raises for a failing shard (see ``PoolReport.failed``)."""
        report = PoolReport()
        t0 = time.perf_counter()
        queue = deque(specs)
        attempts: dict[int, int] = {}
        total_shards = already_done + len(specs)
        self.actors = [self._new_actor(i) for i in range(self.shape.actors)]
        # slot -> its actor's first progress() answer, which comes once the actor has started
        starting = {self.actors[i].progress.remote(): i for i in range(self.shape.actors)}
        start_failures: dict[int, int] = {}  # slot -> its actors that died before starting, in a row
        idle: deque[int] = deque()
        running: dict[ray.ObjectRef, int] = {}
        polls: dict[ray.ObjectRef, int] = {}
        live: dict[int, int] = {}  # slot -> operators finished in its current shard
        finished_ops, last_poll = 0, 0.0
        shown: tuple[int, ...] = ()
        bar = tqdm(total=sum(s.stop - s.start for s in specs), unit="op", smoothing=0.1,
                   desc="generate", disable=not self.show_progress, dynamic_ncols=True)
        try:
            while queue or running:
                while idle and queue:
                    slot, spec = idle.popleft(), queue.popleft()
                    self.busy[slot] = spec
                    live[slot] = 0
                    running[self.actors[slot].run.remote(spec)] = slot
                ready, _ = ray.wait([*running, *starting], num_returns=1, timeout=POLL_S)
                for ref in ready:
                    if ref in starting:
                        slot = starting.pop(ref)
                        try:
                            ray.get(ref)
                        except RayActorError as e:
                            self._start_failed(slot, e, start_failures)
                            self._replace(slot, report)
                            starting[self.actors[slot].progress.remote()] = slot
                        else:
                            start_failures.pop(slot, None)
                            idle.append(slot)
                        continue
                    slot = running.pop(ref)
                    spec = self.busy.pop(slot)
                    live.pop(slot, None)
                    try:
                        summary = ray.get(ref)
                    except RayActorError as e:  # the actor died mid-shard: a fresh one takes its slot
                        self._replace(slot, report)
                        starting[self.actors[slot].progress.remote()] = slot
                        self._attempt_failed(spec, e, attempts, queue, report)
                        continue
                    except RayError as e:  # the shard raised (RayTaskError) or its result was lost
                        self._attempt_failed(spec, e, attempts, queue, report)
                    else:
                        report.completed.append(summary)
                        finished_ops += summary.operators
                        began = time.perf_counter() - t0 - summary.seconds
                        first = len(report.completed) == 1
                        report.startup_s = began if first else min(report.startup_s, began)
                    idle.append(slot)
                if time.perf_counter() - last_poll >= POLL_S:
                    last_poll = time.perf_counter()
                    self._poll(polls, live)
                state = (finished_ops + sum(live.values()), len(report.completed), report.retries,
                         len(report.failed))
                if state != shown:
                    shown = state
                    bar.n = state[0]
                    bar.set_postfix_str(f"shards {already_done + state[1]}/{total_shards}"
                                        f" retries {state[2]} failed {state[3]}")
        finally:
            bar.close()
            for actor in self.actors:
                ray.kill(actor)
            self.busy.clear()
        report.seconds = time.perf_counter() - t0
        return report

    def _poll(self, polls: dict[ray.ObjectRef, int], live: dict[int, int]) -> None:
        """Collect answered progress queries and ask every busy actor without one outstanding."""
        if polls:
            ready, _ = ray.wait(list(polls), num_returns=len(polls), timeout=0)
            for ref in ready:
                slot = polls.pop(ref)
                try:
                    shard, done = ray.get(ref)
                except RayActorError:
                    continue  # the run() result reports the death
                spec = self.busy.get(slot)
                if spec is not None and shard == spec.shard_id:
                    live[slot] = done
        asked = set(polls.values())
        for slot in self.busy:
            if slot not in asked:
                polls[self.actors[slot].progress.remote()] = slot

    def _start_failed(self, slot: int, err: RayActorError, failures: dict[int, int]) -> None:
        """An actor died before it started: stop on an error every actor would hit, or on the same slot
        failing more than ``max_retries`` times in a row; else (its node was lost) it is replaced."""
        n = failures[slot] = failures.get(slot, 0) + 1
        if err.actor_init_failed or n > self.cfg.distributed.max_retries:
            raise SpinlockError(f"a generation actor could not start: {_last_line(err)}") from None
        log.warning("a generation actor died before it started (%s); starting another", _error_text(err))

    def _replace(self, slot: int, report: PoolReport) -> None:
        ray.kill(self.actors[slot], no_restart=True)
        self.actors[slot] = self._new_actor(slot)
        report.replaced_actors += 1

    def _attempt_failed(self, spec: ShardSpec, err: BaseException, attempts: dict[int, int],
                        queue: deque[ShardSpec], report: PoolReport) -> None:
        n = attempts[spec.shard_id] = attempts.get(spec.shard_id, 0) + 1
        text = _error_text(err)
        if n <= self.cfg.distributed.max_retries:
            report.retries += 1
            self.metrics.retry()
            log.warning("%s attempt %d failed (%s); retrying", shard_name(spec.shard_id), n, text)
            queue.appendleft(spec)
        else:
            report.failed[spec.shard_id] = text
            self.metrics.failure()
            log.error("%s failed %d time(s), giving up: %s\n%s", shard_name(spec.shard_id), n, text, err)

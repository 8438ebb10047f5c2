"""Custom Ray metrics of the generation stage (dashboard Metrics view; Prometheus adds a ``ray_`` prefix).

Actors record work as it happens (operators per engine batch, their sampling rate); the driver records
retries and failures. Every series carries the ``run`` tag (``<config name>-<config hash>``) so runs
sharing a cluster stay apart.
"""

from __future__ import annotations

from ray.util.metrics import Counter, Gauge

OPERATORS_DONE = "spinlock_operators_done"
SAMPLE_STEPS_PER_S = "spinlock_sample_steps_per_s"
SHARD_RETRIES = "spinlock_shard_retries"
SHARD_FAILURES = "spinlock_shard_failures"


class WorkerMetrics:
    """Recorded inside a generation actor, once per engine batch."""

    def __init__(self, run: str, actor: str):
        self.tags = {"run": run}
        self.done = Counter(OPERATORS_DONE, "operators generated (rolled out, featurized, written)", ("run",))
        self.rate = Gauge(
            SAMPLE_STEPS_PER_S,
            "operator x realization x step updates per second of an actor's latest engine batch",
            ("run", "actor"),
        )
        self.rate_tags = {"run": run, "actor": actor}

    def batch(self, operators: int, sample_steps: int, seconds: float) -> None:
        self.done.inc(operators, tags=self.tags)
        if seconds > 0:
            self.rate.set(sample_steps / seconds, tags=self.rate_tags)


class DriverMetrics:
    """Recorded by the driver when a shard attempt fails."""

    def __init__(self, run: str):
        self.tags = {"run": run}
        self.retries = Counter(SHARD_RETRIES, "shard attempts that failed and were rescheduled", ("run",))
        self.failures = Counter(SHARD_FAILURES, "shards given up after distributed.max_retries", ("run",))

    def retry(self) -> None:
        self.retries.inc(1, tags=self.tags)

    def failure(self) -> None:
        self.failures.inc(1, tags=self.tags)

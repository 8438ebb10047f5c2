"""``spinlock run``: generate → merge → tokenize → tokens → report, in one Ray session.

Each stage is resumable on its own (complete shards are skipped, the tokenizer's Ray Train run resumes
from its last checkpoint), so rerunning the same command after an interruption picks up where it
stopped.
"""

from __future__ import annotations

import time
from pathlib import Path

from spinlock.config.loading import config_hash
from spinlock.config.models import RunConfig
from spinlock.errors import SpinlockError


def run_pipeline(cfg: RunConfig, out: str | Path, address: str | None = None, workers: int | None = None,
                 show_progress: bool = True) -> dict[str, object]:
    """Run every stage into ``out`` (a local or shared folder); returns a small summary."""
    from spinlock.distributed.cluster import ray_session
    from spinlock.distributed.driver import generate
    from spinlock.distributed.train import tokenize_run
    from spinlock.storage.remote import is_remote
    from spinlock.viz.report import write_report

    if is_remote(out):
        raise SpinlockError(
            f"spinlock run needs a filesystem --out (local, NFS or a mounted PVC), got {out}; for object"
            " storage use `spinlock generate` with the URI and run `spinlock tokenize` on a local copy"
        )
    times: dict[str, float] = {}
    with ray_session(address):
        t = time.perf_counter()
        dataset = generate(cfg, out, workers=workers, show_progress=show_progress)
        times["generate"] = time.perf_counter() - t
        t = time.perf_counter()
        tok = tokenize_run(out, cfg.tokenizer, cfg.seed, config_hash(cfg))
        times["tokenize"] = time.perf_counter() - t
    t = time.perf_counter()
    report = write_report(out)
    times["report"] = time.perf_counter() - t
    return {"dataset": str(dataset), "tokenizer": tok, "report": str(report), "seconds": times}

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
from spinlock.distributed.cluster import ray_session
from spinlock.distributed.driver import generate
from spinlock.distributed.tokenize_stage import tokenize_run
from spinlock.storage.layout import DATASET_FILE, REPORT_DIR, TOKENIZER_DIR
from spinlock.storage.remote import RemoteStore, check_location, is_remote
from spinlock.viz.report import write_report


def run_pipeline(cfg: RunConfig, out: str | Path, address: str | None = None, workers: int | None = None,
                 show_progress: bool = True) -> dict[str, object]:
    """Run every stage into ``out``: a local or shared folder, or an ``s3://`` / ``gs://`` URI.

    For a URI every stage works from the driver's staging folder (``distributed.staging_dir``) and the
    bucket is the truth: shards, features and ``dataset.h5`` are uploaded by generation, the tokenizer,
    ``tokens.parquet`` and ``dataset.h5`` with ``/tokens`` by tokenize (Ray Train checkpoints live in the
    bucket), and ``report/`` last. Returns a small summary (locations as given, URIs for a bucket).
    """
    out = check_location(out, "--out")
    store = RemoteStore(out) if is_remote(out) else None
    if store is not None:
        store.ensure_bucket()  # before Ray starts
    where = store.url if store is not None else str(out)
    staging = cfg.distributed.staging_dir
    times: dict[str, float] = {}
    with ray_session(address):
        t = time.perf_counter()
        generate(cfg, out, workers=workers, show_progress=show_progress)
        times["generate"] = time.perf_counter() - t
        t = time.perf_counter()
        tok = tokenize_run(out, cfg.tokenizer, cfg.seed, config_hash(cfg), staging_dir=staging)
        times["tokenize"] = time.perf_counter() - t
    t = time.perf_counter()
    if store is None:
        report = str(write_report(out))
    else:
        local = store.mirror_run(store.staging(staging))
        store.upload_dir(write_report(local), REPORT_DIR)
        report = f"{where}/{REPORT_DIR}"
    times["report"] = time.perf_counter() - t
    return {"dataset": f"{where}/{DATASET_FILE}", "tokenizer_dir": f"{where}/{TOKENIZER_DIR}", "tokenizer": tok,
            "report": report, "seconds": times}

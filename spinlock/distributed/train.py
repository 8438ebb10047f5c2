"""Ray Train edge of the tokenizer: :func:`fit_vqvae` runs the training core on a Ray Train worker group.

:func:`train_loop_per_worker` is a thin wrapper around the plain training core
(``spinlock.encoding.training.train_model``): it builds the model identically on every rank, restores
the latest checkpoint (``ray.train.get_checkpoint``) when Ray Train restarts the worker group after a
failure, wraps the model in DDP (``prepare_model``; the quantizers all-reduce their EMA codebook
statistics and k-means initialisation themselves, ``sync_codebook``), feeds it its shard of the
training Dataset (read through Ray Data once when it fits ``training.cache_mb``, see
:class:`~spinlock.distributed.feature_stream.ShardBatches`), and reports metrics with a checkpoint from rank 0
once ``training.checkpoint_seconds`` have passed and after the last epoch (``ray.train.report`` is a
barrier every rank calls, and Ray Train takes one report per controller poll, :data:`POLL_SECONDS`).
The stage around it is :mod:`spinlock.distributed.tokenize_stage`.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from spinlock.config.tokenizer import TokenizerConfig
from spinlock.distributed.cluster import cluster_capacity
from spinlock.distributed.feature_stream import ShardBatches, shuffled
from spinlock.encoding.model import ModelSpec
from spinlock.encoding.training import TrainSettings, TrainState, build_model, epoch_line, flat_metrics, train_model
from spinlock.errors import DataError, SpinlockError
from spinlock.logs import quiet_train_worker
from spinlock.rng import numpy_rng

STATE_FILE = "state.pt"
POLL_SECONDS = 0.5
"""Ray Train's controller poll (``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``, default 2 s) unless the user set
one: the fit's start, every report and its end each wait for the next poll, so at 2 s a quickstart fit
(2-3 reports, ~0.4 s epochs) idles several seconds; one poll is a small remote call per worker."""


class TrainingError(SpinlockError):
    """Ray Train gave up on the tokenizer fit (after ``training.max_failures`` restarts)."""


def train_loop_per_worker(config: dict) -> None:
    """Ray Train worker function (``config`` from :func:`fit_vqvae`)."""
    spec = ModelSpec.from_json(config["spec"])
    settings = TrainSettings(**config["settings"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    ray.data.DataContext.get_current().enable_progress_bars = False  # per-epoch iterators: no bars
    quiet_train_worker()

    model = build_model(spec, settings.seed)
    start = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            start = TrainState.load(Path(d) / STATE_FILE)
        model.load_state_dict(start.model_state)
    model.to(device)
    wrapped = ray.train.torch.prepare_model(model, parallel_strategy="ddp" if world > 1 else None)

    cache_bytes = config["cache_mb"] * 2**20
    train_shard = ShardBatches(ray.train.get_dataset_shard("train"), cache_bytes)
    batch_size, shuffle_buffer = config["batch_size"], config["shuffle_buffer"]

    def batches(shard: ShardBatches, epoch: int | None):
        rng = None if epoch is None else numpy_rng(settings.seed, "tokenizer.shuffle", epoch, rank)
        # drop_last on training epochs: equal step counts on every rank (DDP)
        for b in shuffled(shard, batch_size, shuffle_buffer, rng, drop_last=epoch is not None):
            yield {k: torch.from_numpy(np.ascontiguousarray(v)).to(device).float() for k, v in b.items()}

    def train_batches(epoch: int):
        return batches(train_shard, epoch)

    validation = None
    if rank == 0 and config["has_validation"]:
        val_shard = ShardBatches(ray.train.get_dataset_shard("validation"), cache_bytes)

        def validation(epoch: int):
            return batches(val_shard, None)

    checkpoint_seconds = config["checkpoint_seconds"]
    last_checkpoint = time.monotonic()

    def on_epoch_end(state: TrainState, record: dict) -> None:
        nonlocal last_checkpoint
        if rank == 0:  # not print(): Ray Train patches it to log *and* echo, so every line would show twice
            sys.stdout.write(epoch_line(record, settings.epochs) + "\n")
            sys.stdout.flush()
        due = time.monotonic() - last_checkpoint >= checkpoint_seconds
        if world > 1:  # ray.train.report is a barrier: every rank follows rank 0's clock
            flag = torch.tensor([int(due)], device=device)
            dist.broadcast(flag, src=0)
            due = bool(flag.item())
        due = due or state.epoch == settings.epochs or state.stopped  # the last epoch: every rank knows
        if not due:
            return
        metrics = flat_metrics(record)
        if rank != 0:
            ray.train.report(metrics, checkpoint=None)
        else:
            with tempfile.TemporaryDirectory() as d:
                state.save(Path(d) / STATE_FILE)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
        last_checkpoint = time.monotonic()

    train_model(model, settings, train_batches, validation, start=start, on_epoch_end=on_epoch_end,
                wrapped=wrapped, rank=rank)


def resolve_use_gpu(setting: bool | str, workers: int) -> bool:
    """``auto``: GPUs when the cluster has or can autoscale to one per worker (as generation counts)."""
    if setting == "auto":
        return cluster_capacity("GPU") >= workers
    return bool(setting)


def fit_vqvae(train: ray.data.Dataset, validation: ray.data.Dataset, spec: ModelSpec, settings: TrainSettings,
              cfg: TokenizerConfig, *, storage_path: str | Path, name: str, n_train: int, n_validation: int,
              storage_filesystem=None) -> TrainState:
    """Run the Ray Train fit and return the final state (from the latest checkpoint).

    ``storage_path``: Ray Train's storage, a local folder, or with ``storage_filesystem`` (a pyarrow
    filesystem) a bucket path without its scheme (``bucket/prefix/tokenizer/ray``).
    """
    tc = cfg.training
    per_worker = n_train // tc.num_workers
    if per_worker < 2:
        raise DataError(f"{n_train} training rows cannot feed {tc.num_workers} workers (need >= 2 each)")
    batch_size = min(tc.batch_size, per_worker)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "spec": spec.to_json(),
            "settings": dataclasses.asdict(settings),
            "batch_size": batch_size,
            "shuffle_buffer": min(per_worker, 8 * batch_size),
            "cache_mb": tc.cache_mb,
            "checkpoint_seconds": tc.checkpoint_seconds,
            "has_validation": n_validation > 0,
        },
        scaling_config=ScalingConfig(num_workers=tc.num_workers, use_gpu=resolve_use_gpu(tc.use_gpu, tc.num_workers),
                                     resources_per_worker={"CPU": tc.cpus_per_worker}),
        run_config=RunConfig(name=name, storage_filesystem=storage_filesystem,
                             storage_path=str(storage_path if storage_filesystem else Path(storage_path).resolve()),
                             failure_config=FailureConfig(max_failures=tc.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)),
        datasets={"train": train, "validation": validation},
        # one worker reads the whole training set: no split, so no SplitCoordinator actor to start
        dataset_config=DataConfig(datasets_to_split=["train"] if tc.num_workers > 1 else [],
                                  execution_options=ray.data.ExecutionOptions(preserve_order=True)),
    )
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", str(POLL_SECONDS))  # read by trainer.fit()
    # trainer.fit() (Ray 2.60, main thread) installs a SIGINT handler that aborts its controller and leaves it
    # installed: a later Ctrl-C (the report stage of `spinlock run`, a notebook) would call abort on a dead
    # controller and exit with status 0 instead of stopping with KeyboardInterrupt
    sigint = signal.getsignal(signal.SIGINT)
    try:
        result = trainer.fit()
    except ray.train.TrainingFailedError as e:
        raise TrainingError(f"tokenizer training failed (run {name!r} under {storage_path}): {e}") from e
    finally:
        if sigint is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, sigint)
    if getattr(result, "error", None) is not None:
        raise TrainingError(f"tokenizer training failed (run {name!r}): {result.error}")
    if result.checkpoint is None:
        raise TrainingError(f"tokenizer training {name!r} finished without a checkpoint")
    with result.checkpoint.as_directory() as d:
        return TrainState.load(Path(d) / STATE_FILE)

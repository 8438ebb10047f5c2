"""Ray Train edge of the tokenizer and the ``spinlock tokenize`` stage driver.

:func:`train_loop_per_worker` is a thin wrapper around the plain training core
(``spinlock.encoding.training.train_model``): it builds the model identically on every rank, restores
the latest checkpoint (``ray.train.get_checkpoint``) when Ray Train restarts the worker group after a
failure, wraps the model in DDP (``prepare_model``; the quantizers all-reduce their EMA codebook
statistics and k-means initialisation themselves, ``sync_codebook``), feeds it its shard of the
training Dataset (read through Ray Data once when it fits ``training.cache_mb``, see
:class:`~spinlock.distributed.data.ShardBatches`), and reports metrics with a checkpoint from rank 0
once ``training.checkpoint_seconds`` have passed and after the last epoch (``ray.train.report`` is a
barrier every rank calls, and Ray Train takes one report per ~2 s poll, longer than a small epoch).

:func:`tokenize_run` is the whole stage: split → streaming cleaning fit → category discovery →
Ray Train fit → tokenizer directory → tokens for every operator.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import h5py
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
from spinlock.distributed.data import (
    ShardBatches,
    encode_dataset,
    fit_cleaner,
    prepare_splits,
    read_features,
    shuffled,
)
from spinlock.encoding.categories import CategoryDiscovery
from spinlock.encoding.cleaning import FeatureCleaner
from spinlock.encoding.icfields import stored_ic_shape
from spinlock.encoding.layout import TokenLayout
from spinlock.encoding.metrics import token_health
from spinlock.encoding.model import (
    ModelSpec,
    effective_inputs,
    encoder_codebook_sizes,
    scale_codebook_sizes,
    stream_names,
)
from spinlock.encoding.outputs import write_tokens
from spinlock.encoding.rates import plan_streams
from spinlock.encoding.schema import SCALAR_FAMILIES
from spinlock.encoding.split import Split
from spinlock.encoding.tokenizer import Tokenizer
from spinlock.encoding.training import TrainSettings, TrainState, build_model, epoch_line, flat_metrics, train_model
from spinlock.errors import DataError, SpinlockError
from spinlock.rng import numpy_rng
from spinlock.storage.remote import RemoteStore, is_remote

FAULT_ENV = "SPINLOCK_TOKENIZER_FAULT_MARKER"
"""Test hook: when set to a path that does not exist yet, training creates it and raises once at the
start of epoch ``FAULT_EPOCH`` (so Ray Train must restart the workers from the epoch-0 checkpoint)."""
FAULT_EPOCH = 1
STATE_FILE = "state.pt"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
_stage_log = logging.getLogger("spinlock.tokenize")  # the stage's lines (the CLI shows them; -q hides them)


class TrainingError(SpinlockError):
    """Ray Train gave up on the tokenizer fit (after ``training.max_failures`` restarts)."""


class InjectedFault(RuntimeError):
    """The failure raised by the FAULT_ENV test hook."""


def tokenizer_hash(cfg: TokenizerConfig, seed: int, config_hash: str) -> str:
    """Identity of a tokenizer fit: the run's config hash (which leaves the tokenizer section out),
    the seed and the resolved tokenizer section."""
    blob = json.dumps({"config_hash": config_hash, "seed": seed, "tokenizer": cfg.model_dump(mode="json")},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_name(out_dir: str | Path, config_hash: str) -> str:
    """Ray Train run name from a :func:`tokenizer_hash` and a hash of the absolute output location.

    RunConfig(name) resumes whatever run already has that name, so rerunning ``spinlock tokenize`` on
    the same directory with the same config resumes its training, and anything else starts afresh.
    """
    location = str(out_dir).rstrip("/") if is_remote(out_dir) else str(Path(out_dir).resolve())
    where = hashlib.sha256(location.encode()).hexdigest()[:8]
    return f"tokenizer-{config_hash}-{where}"


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
    fault_marker = config.get("fault_marker")

    def batches(shard: ShardBatches, epoch: int | None):
        rng = None if epoch is None else numpy_rng(settings.seed, "tokenizer.shuffle", epoch, rank)
        # drop_last on training epochs: equal step counts on every rank (DDP)
        for b in shuffled(shard, batch_size, shuffle_buffer, rng, drop_last=epoch is not None):
            yield {k: torch.from_numpy(np.ascontiguousarray(v)).to(device).float() for k, v in b.items()}

    def train_batches(epoch: int):
        if fault_marker and epoch == FAULT_EPOCH and not os.path.exists(fault_marker):
            Path(fault_marker).write_text(f"failed once at epoch {epoch} on rank {rank}\n")
            raise InjectedFault(f"injected failure at epoch {epoch} ({FAULT_ENV})")
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
        due = state.epoch == settings.epochs or time.monotonic() - last_checkpoint >= checkpoint_seconds
        if world > 1:  # ray.train.report is a barrier: every rank follows rank 0's clock
            flag = torch.tensor([int(due)], device=device)
            dist.broadcast(flag, src=0)
            due = bool(flag.item())
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


def _use_gpu(setting: bool | str, workers: int) -> bool:
    """``auto``: GPUs when the cluster has or can autoscale to one per worker (as generation counts)."""
    if setting == "auto":
        return cluster_capacity("GPU") >= workers
    return bool(setting)


def fit_vqvae(train: ray.data.Dataset, validation: ray.data.Dataset, spec: ModelSpec, settings: TrainSettings,
              cfg: TokenizerConfig, *, storage_path: str | Path, name: str, n_train: int, n_validation: int,
              fault_marker: str | None = None, storage_filesystem=None) -> TrainState:
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
            "fault_marker": fault_marker,
        },
        scaling_config=ScalingConfig(num_workers=tc.num_workers, use_gpu=_use_gpu(tc.use_gpu, tc.num_workers),
                                     resources_per_worker={"CPU": tc.cpus_per_worker}),
        run_config=RunConfig(name=name, storage_filesystem=storage_filesystem,
                             storage_path=str(storage_path if storage_filesystem else Path(storage_path).resolve()),
                             failure_config=FailureConfig(max_failures=tc.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)),
        datasets={"train": train, "validation": validation},
        dataset_config=DataConfig(datasets_to_split=["train"],
                                  execution_options=ray.data.ExecutionOptions(preserve_order=True)),
    )
    try:
        result = trainer.fit()
    except ray.train.TrainingFailedError as e:
        raise TrainingError(f"tokenizer training failed (run {name!r} under {storage_path}): {e}") from e
    if getattr(result, "error", None) is not None:
        raise TrainingError(f"tokenizer training failed (run {name!r}): {result.error}")
    if result.checkpoint is None:
        raise TrainingError(f"tokenizer training {name!r} finished without a checkpoint")
    with result.checkpoint.as_directory() as d:
        return TrainState.load(Path(d) / STATE_FILE)


def plan_model(cfg: TokenizerConfig, cleaner: FeatureCleaner, categories: list, temporal_length: int,
               ic_shape: tuple[int, int, int], resolution: int, train: ray.data.Dataset,
               n_train: int) -> tuple[ModelSpec, dict]:
    """The model spec of a fit, with codebook sizes scaled to the data, and the numbers behind them.

    Level sizes: ``scale_codebook_sizes(codebook_sizes, min(n_train, kmeans_init_rows), rows_per_code)``.
    Token streams per category: ``plan_streams`` (``model.streams`` allocated by the variance of each
    category's principal components) in the first ``min(n_train, kmeans_init_rows)`` training rows
    (the rows k-means starts from). Per stream:
    ``encoder_codebook_sizes`` from the effective inputs of each single-stream category in the same
    rows (categories with several streams, the temporal and IC encoders are high-dimensional, so they
    keep the level sizes).
    """
    m = cfg.model
    init_rows = min(n_train, cfg.training.kmeans_init_rows)
    levels = scale_codebook_sizes(m.codebook_sizes, init_rows, m.rows_per_code)
    sample = train.limit(init_rows).take_batch(init_rows, batch_format="numpy")["x"] if init_rows else None
    n_temporal = len(cleaner.temporal_names_out)
    # per category: its streams, and (single-stream categories only; several streams mean a
    # high-dimensional input) its effective inputs, one entry per stream
    effective: list[float | None] = []
    streams = plan_streams(sample, [c.columns for c in categories], m.streams, m.components_per_stream)
    for c, s in zip(categories, streams, strict=True):
        cols = sample[:, list(c.columns)] if sample is not None else None
        effective += [effective_inputs(cols, m.code_resolution) if cols is not None else None] if s == 1 else [None] * s
    names = (*stream_names([c.name for c in categories], streams), *(("temporal",) if n_temporal else ()), "ic")
    effective += [None] * (len(names) - len(effective))
    spec = ModelSpec(
        category_columns=tuple(c.columns for c in categories),
        n_features=len(cleaner.names_out),
        temporal_features=n_temporal,
        temporal_length=temporal_length if n_temporal else 0,
        ic_channels=ic_shape[0],
        ic_resolution=resolution,
        latent_dim=m.latent_dim,
        hidden_dim=m.hidden_dim,
        codebook_sizes=levels,
        commitment_weight=m.commitment_weight,
        ema_decay=m.ema_decay,
        dead_code_threshold=m.dead_code_threshold,
        kmeans_iters=m.kmeans_iters,
        encoder_names=names,
        encoder_codebook_sizes=encoder_codebook_sizes(levels, effective, init_rows, m.rows_per_code),
        category_streams=tuple(streams),
        pca_components=m.components_per_stream,
    )
    plan = {"configured": list(m.codebook_sizes), "init_rows": init_rows, "rows_per_code": m.rows_per_code,
            "code_resolution": m.code_resolution, "streams": m.streams,
            "components_per_stream": m.components_per_stream,
            "category_streams": {c.name: s for c, s in zip(categories, streams, strict=True)},
            "effective_inputs": {n: (round(e, 1) if e is not None else None)
                                 for n, e in zip(names, effective, strict=True)}}
    return spec, plan


def codebook_message(spec: ModelSpec, plan: dict) -> str:
    """One log line: the level sizes (and why, when scaled down) and the encoders given fewer codes."""
    msg = f"codebooks: {list(spec.codebook_sizes)} codes per level"
    if list(spec.codebook_sizes) != plan["configured"]:
        msg += (f" (configured {plan['configured']}, scaled down: <= {plan['init_rows']} k-means rows"
                f" / rows_per_code {plan['rows_per_code']})")
    small = [f"{n} {list(k)} (~{plan['effective_inputs'][n]:.0f} inputs)"
             for n, k in zip(spec.encoder_names, spec.encoder_codebook_sizes, strict=True)
             if tuple(k) != tuple(spec.codebook_sizes)]
    if small:
        msg += f"; few distinguishable inputs (resolution {plan['code_resolution']}): " + ", ".join(small)
    single = sum(1 for k in spec.encoder_codebook_sizes for v in k if v == 1)
    if single:
        msg += f" ({single} levels with one code: not token positions)"
    multi = [f"{n} x{s}" for n, s in plan["category_streams"].items() if s > 1]
    if multi:
        msg += (f"; {spec.n_encoders} token streams, several for wide categories (one per"
                f" {plan['components_per_stream']} principal components, by variance): " + ", ".join(multi))
    return msg


def layout_message(layout: TokenLayout, fit_rows: int) -> str:
    """One log line: how many token positions, and which levels are not positions and why."""
    one_code = [p.name for p, _ in layout.dropped if p.codebook_size == 1]
    collapsed = [p.name for p, _ in layout.dropped if p.codebook_size > 1]
    msg = (f"token layout: {len(layout.positions)} positions from {len(layout.streams)} streams"
           f" x 3 levels; not emitted: {len(one_code)} levels with one code")
    if collapsed:
        msg += (f", {len(collapsed)} codebooks of which the {fit_rows} training operators use one code: "
                + ", ".join(collapsed[:8]) + (" ..." if len(collapsed) > 8 else ""))
    return msg


def train_settings(cfg: TokenizerConfig, seed: int, names_out: list[str]) -> TrainSettings:
    t = cfg.training
    return TrainSettings(epochs=t.epochs, learning_rate=t.learning_rate, weight_decay=t.weight_decay,
                         temporal_weight=cfg.model.temporal_weight, ic_weight=cfg.model.ic_weight,
                         kmeans_init_rows=t.kmeans_init_rows, seed=seed,
                         family_columns=_family_columns(names_out), lr_schedule=t.lr_schedule)


def _fmt(values: list[float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def _converged(h5_path: Path, index: np.ndarray) -> np.ndarray:
    """Mask of the rows of ``index`` whose operator did not diverge (``/status == 0``; all if absent).

    Diverged operators all get the tokens of the median operator, which says nothing about codebooks.
    """
    with h5py.File(h5_path, "r") as f:
        if "status" not in f or "operators/index" not in f:
            return np.ones(len(index), dtype=bool)
        status = dict(zip(f["operators/index"][:].tolist(), f["status"][:].tolist(), strict=True))
    return np.array([status.get(int(i), 0) == 0 for i in index], dtype=bool)


def _family_columns(names: list[str]) -> dict[str, list[int]]:
    fams = [n.split(".", 1)[0] for n in names]
    return {f: [j for j, g in enumerate(fams) if g == f] for f in SCALAR_FAMILIES}


def quiet_train_worker() -> None:
    """Lower Ray Train's per-epoch INFO lines in this worker process to WARNING.

    Every ``ray.train.report`` logs the full repr of its metrics and every checkpoint its path: two
    long lines per epoch and worker that bury the stage's one-line epoch summary (``epoch_line``).
    The report logger is named after its file, so it is looked up on its (private) module; if Ray
    moves it, the lines simply come back.
    """
    logging.getLogger("ray.train.v2._internal.execution.storage").setLevel(logging.WARNING)
    try:
        importlib.import_module("ray.train.v2._internal.execution.context").logger.setLevel(logging.WARNING)
    except (ImportError, AttributeError):
        pass


def quiet_ray_data() -> None:
    """Turn off Ray Data's own progress output for the datasets created after this call.

    The stage makes several passes (cleaning statistics, k-means rows, every epoch's train and validation
    iterators, encoding); Ray Data reports each one with per-operator bars, or with INFO lines when stdout
    is not a terminal, burying the stage's own log (per-epoch losses, R², codebook health). The context
    travels with the datasets, so Ray Train workers' iterators stay quiet too.
    """
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


def tokenize_run(out_dir: str | Path, cfg: TokenizerConfig, seed: int, config_hash: str,
                 log: Callable[[str], None] = _stage_log.info, staging_dir: str | None = None) -> dict:
    """The tokenize stage on a run directory or object-store URI (Ray must be initialised). Returns the
    summary dict.

    ``config_hash`` is the run's (``spinlock.config.config_hash``); combined with the seed and the
    tokenizer section it names the Ray Train run, so only an identical rerun resumes a fit.

    Writes ``OUT/tokenizer/`` (tokenizer files, ``metrics.jsonl``, ``summary.json``, Ray Train storage
    under ``ray/``), ``dataset.h5:/tokens``, ``/features/initial_learned`` and ``OUT/tokens.parquet``.
    For a URI (:class:`RunOutput`) the files are written in the staging folder (``staging_dir``) and
    uploaded at the end, while Ray Train keeps its checkpoints in the bucket.
    """
    quiet_ray_data()
    run = RunOutput(out_dir, staging_dir)
    out = run.local
    tok_dir = out / "tokenizer"
    tok_dir.mkdir(parents=True, exist_ok=True)
    config_hash = tokenizer_hash(cfg, seed, config_hash)
    h5_path = run.dataset()
    ic_shape = stored_ic_shape(h5_path)
    t0 = time.perf_counter()

    ds, schema = read_features(run.where)
    split = Split(seed, cfg.validation_fraction)
    cleaner = fit_cleaner(ds, FeatureCleaner(schema, split, **cfg.cleaning.model_dump()))
    log(f"cleaning: {len(cleaner.names_out)}/{len(schema.scalar)} scalar features and"
        f" {len(cleaner.temporal_names_out)}/{len(schema.temporal)} curves kept"
        f" ({len(cleaner.drop_reason_)} dropped) from {cleaner.n_fit_rows_} training rows")

    cats = CategoryDiscovery(cfg.categories.min_categories, cfg.categories.max_categories).fit(
        cleaner.correlation_, cleaner.names_out)
    categories = cats.categories_
    log(f"categories: {len(categories)} (silhouette {max(cats.scores_.values(), default=float('nan')):.3f})")

    resolution = min(cfg.model.ic_resolution, ic_shape[1], ic_shape[2])
    train_ds, val_ds = prepare_splits(ds, cleaner, run.ic_source, resolution)
    n_train, n_val = train_ds.count(), val_ds.count()
    spec, plan = plan_model(cfg, cleaner, categories, schema.temporal_length, ic_shape, resolution, train_ds,
                            n_train)
    settings = train_settings(cfg, seed, cleaner.names_out)
    log(codebook_message(spec, plan))
    log(f"training: {n_train} train / {n_val} validation rows, {spec.n_encoders} token streams,"
        f" {cfg.training.num_workers} worker(s)")
    storage_path, storage_fs = run.train_storage()
    state = fit_vqvae(train_ds, val_ds, spec, settings, cfg, storage_path=storage_path, storage_filesystem=storage_fs,
                      name=run_name(run.where, config_hash), n_train=n_train, n_validation=n_val,
                      fault_marker=os.environ.get(FAULT_ENV))
    del train_ds, val_ds

    model = build_model(spec, seed)
    model.load_state_dict(state.model_state)
    tokenizer = Tokenizer(cleaner, cats, model, config_hash=config_hash, seed=seed, ic_shape=ic_shape,
                          config=cfg.model_dump(mode="json"), layout=TokenLayout.plan(spec))
    with open(tok_dir / METRICS_FILE, "w") as f:
        for record in state.history:
            f.write(json.dumps(record) + "\n")

    gpus = 1.0 if _use_gpu(cfg.training.use_gpu, cfg.data_actors) else 0.0
    index, tokens, embedding = encode_dataset(ds, tokenizer, run.ic_source, cfg.data_actors, gpus)
    converged = _converged(h5_path, index)
    # the layout is fixed here, from the fit's own operators (converged, training split), and saved
    fit_rows = converged & ~cleaner.split.is_validation(index)
    tokenizer.layout, keep = tokenizer.layout.trim(tokens[fit_rows])
    tokens = np.ascontiguousarray(tokens[:, keep])
    tokenizer.save(tok_dir)
    log(layout_message(tokenizer.layout, int(fit_rows.sum())))
    write_tokens(out, index, tokens, tokenizer.layout, embedding)
    final = state.history[-1] if state.history else {}
    health = token_health(tokens[converged], tokenizer.layout)
    summary = {
        "operators": int(len(index)), "train_rows": n_train, "validation_rows": n_val,
        "features_in": len(schema.scalar), "features_kept": len(cleaner.names_out),
        "categories": tokenizer.category_names, "codebook_sizes": list(spec.codebook_sizes),
        "encoder_codebook_sizes": {n: list(k) for n, k in zip(spec.encoder_names, spec.encoder_codebook_sizes,
                                                              strict=True)},
        "codebook_plan": plan, "layout": tokenizer.layout.to_json(),
        "epochs": state.epoch, "validation": final.get("validation"), "tokens": health,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    log(f"codebooks over the tokens of {health['rows']} converged operators: usage"
        f" {_fmt(health['codebook_usage'])}, perplexity/K {_fmt(health['perplexity_ratio'])} (levels 1-3; the"
        f" {health['positions']} token positions, one-code levels left out)")
    if health["constant_positions"]:
        log(f"warning: {len(health['constant_positions'])} token position(s) hold one code for every converged"
            f" operator: {', '.join(health['constant_positions'][:8])}")
    (tok_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    run.publish(tokenizer=True)
    log(f"tokens: [{len(index)}, {tokens.shape[1]}] written to {run.where}/dataset.h5 and"
        f" {run.where}/tokens.parquet")
    return summary


def encode_run(out_dir: str | Path, tokenizer_dir: str | Path, actors: int = 1,
               log: Callable[[str], None] = _stage_log.info, staging_dir: str | None = None) -> np.ndarray:
    """Tokens for a run directory or URI with an already trained tokenizer (Ray must be initialised).

    A tokenizer URI is downloaded to the node's cache (:func:`spinlock.storage.remote.local_copy` of its
    folder); the run is read and written as in :func:`tokenize_run`.
    """
    quiet_ray_data()
    run = RunOutput(out_dir, staging_dir)
    if is_remote(tokenizer_dir):
        store = RemoteStore(str(tokenizer_dir))
        tokenizer_dir = store.fetch_tree("", store.staging(staging_dir))
    tokenizer = Tokenizer.load(tokenizer_dir)
    ds, schema = read_features(run.where)
    tokenizer.cleaner.check_schema(schema, f"{run.where}/features")
    h5_path = run.dataset()
    ic_path = None
    if tokenizer.spec.ic_channels:
        shape = stored_ic_shape(h5_path)
        if tuple(shape) != tokenizer.ic_shape:
            raise DataError(f"{h5_path}: /ics/fields rows are {shape}, the tokenizer expects {tokenizer.ic_shape}")
        ic_path = run.ic_source
    index, tokens, embedding = encode_dataset(ds, tokenizer, ic_path, actors,
                                              1.0 if _use_gpu("auto", actors) else 0.0)
    write_tokens(run.local, index, tokens, tokenizer.layout, embedding)
    run.publish(tokenizer=False)
    log(f"tokens: [{len(index)}, {tokens.shape[1]}] written to {run.where}/dataset.h5 and"
        f" {run.where}/tokens.parquet")
    return tokens


class RunOutput:
    """Where the tokenize stage reads and writes a run: a local folder, or an object-store URI.

    For a URI, ``local`` is the node's staging folder of that URI (``distributed.staging_dir``), holding a
    copy of ``dataset.h5`` fetched from the bucket (downloaded only when the object changed); the feature
    tables (Ray Data) and the IC fields (``ic_source``, fsspec + h5py in the workers) are read from the
    bucket on whichever node a task runs; Ray Train's storage is ``OUT/tokenizer/ray`` in the bucket.
    """

    def __init__(self, out_dir: str | Path, staging_dir: str | None = None):
        self.store = RemoteStore(str(out_dir)) if is_remote(out_dir) else None
        if self.store is not None:
            self.store.ensure_bucket()
            self.local = self.store.staging(staging_dir)
            self.where = self.store.url
        else:
            self.local = Path(out_dir).resolve()
            self.where = str(self.local)
        self.ic_source = f"{self.where}/dataset.h5"

    def dataset(self) -> Path:
        """The local ``dataset.h5`` (fetched from the bucket for a URI)."""
        path = self.local / "dataset.h5"
        if self.store is not None:
            if self.store.fetch("dataset.h5", path) is None:
                raise DataError(f"{self.ic_source} not found (run `spinlock generate` first)")
            # the copy is about to get /tokens: until publish() it no longer stands for the bucket's object
            path.with_name(path.name + ".remote").unlink()
        if not path.is_file():
            raise DataError(f"{path} not found (the IC branch reads /ics/fields from it)")
        return path

    def train_storage(self) -> tuple[str, object | None]:
        """Ray Train's ``(storage_path, storage_filesystem)``: the bucket for a URI, so a killed trainer or
        driver resumes from the checkpoints there on any machine."""
        if self.store is None:
            return str(self.local / "tokenizer" / "ray"), None
        return self.store.key("tokenizer/ray"), self.store.arrow_filesystem()

    def publish(self, tokenizer: bool) -> None:
        """Upload the stage's outputs for a URI: the tokenizer folder, ``tokens.parquet``, then
        ``dataset.h5`` (with ``/tokens``) as one object, replaced whole or not at all."""
        if self.store is None:
            return
        if tokenizer:
            self.store.upload_dir(self.local / "tokenizer", "tokenizer")
        self.store.upload(self.local / "tokens.parquet", "tokens.parquet")
        self.store.publish(self.local / "dataset.h5", "dataset.h5")

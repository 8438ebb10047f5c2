"""The ``spinlock tokenize`` and ``spinlock encode`` stages on Ray: :func:`tokenize_run`, :func:`encode_run`.

:func:`tokenize_run` is the whole stage: split → streaming cleaning fit (Ray Data,
:mod:`spinlock.distributed.feature_stream`) → category discovery → model plan (:mod:`spinlock.encoding.plan`)
→ Ray Train fit (:func:`spinlock.distributed.train.fit_vqvae`) → tokenizer directory → tokens for every
operator. :class:`RunOutput` says where a run is read and written: a local folder or an object-store URI.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import ray

from spinlock.config.tokenizer import TokenizerConfig
from spinlock.distributed.feature_stream import encode_dataset, fit_cleaner, prepare_splits, read_features
from spinlock.distributed.train import fit_vqvae, resolve_use_gpu
from spinlock.encoding.categories import CategoryDiscovery
from spinlock.encoding.cleaning import FeatureCleaner
from spinlock.encoding.icfields import stored_ic_shape
from spinlock.encoding.layout import TokenLayout
from spinlock.encoding.outputs import TokenWriter
from spinlock.encoding.plan import codebook_message, layout_message, plan_model, train_settings
from spinlock.encoding.split import Split
from spinlock.encoding.tokenizer import Tokenizer
from spinlock.encoding.training import build_model
from spinlock.errors import DataError
from spinlock.logs import quiet_ray_data
from spinlock.storage.layout import DATASET_FILE, METRICS_FILE, SUMMARY_FILE, TOKENIZER_DIR, TOKENS_FILE
from spinlock.storage.remote import RemoteStore, is_remote

_stage_log = logging.getLogger("spinlock.tokenize")  # the stage's lines (the CLI shows them; -q hides them)


def tokenizer_hash(cfg: TokenizerConfig, seed: int, config_hash: str) -> str:
    """Identity of a tokenizer fit: the run's config hash (which leaves the tokenizer section out),
    the seed and the resolved tokenizer section."""
    blob = json.dumps({"config_hash": config_hash, "seed": seed, "tokenizer": cfg.model_dump(mode="json")},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_name(out_dir: str | Path, fit_hash: str) -> str:
    """Ray Train run name from a :func:`tokenizer_hash` and a hash of the absolute output location.

    RunConfig(name) resumes whatever run already has that name, so rerunning ``spinlock tokenize`` on
    the same directory with the same config resumes its training, and anything else starts afresh.
    """
    location = str(out_dir).rstrip("/") if is_remote(out_dir) else str(Path(out_dir).resolve())
    where = hashlib.sha256(location.encode()).hexdigest()[:8]
    return f"tokenizer-{fit_hash}-{where}"


def kmeans_sample(train: ray.data.Dataset, rows: int, n_features: int) -> np.ndarray:
    """[rows, D'] the first ``rows`` cleaned training rows: k-means starts from them, and
    :func:`~spinlock.encoding.plan.plan_model` sizes the model on them."""
    if not rows:
        return np.empty((0, n_features), dtype=np.float32)
    return train.limit(rows).take_batch(rows, batch_format="numpy")["x"]


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
    tok_dir = out / TOKENIZER_DIR
    tok_dir.mkdir(parents=True, exist_ok=True)
    fit_hash = tokenizer_hash(cfg, seed, config_hash)
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
    sample = kmeans_sample(train_ds, min(n_train, cfg.training.kmeans_init_rows), len(cleaner.names_out))
    spec, plan = plan_model(cfg.model, categories, sample, temporal_features=len(cleaner.temporal_names_out),
                            temporal_length=schema.temporal_length, ic_channels=ic_shape[0], ic_resolution=resolution)
    settings = train_settings(cfg, seed, cleaner.names_out)
    log(codebook_message(spec, plan))
    log(f"training: {n_train} train / {n_val} validation rows, {spec.n_encoders} token streams,"
        f" {cfg.training.num_workers} worker(s)")
    storage_path, storage_fs = run.train_storage()
    state = fit_vqvae(train_ds, val_ds, spec, settings, cfg, storage_path=storage_path, storage_filesystem=storage_fs,
                      name=run_name(run.where, fit_hash), n_train=n_train, n_validation=n_val)
    del train_ds, val_ds
    if state.best_epoch is not None:
        why = f", stopped: no better validation score in {cfg.training.patience}" if state.stopped else ""
        log(f"training: {state.epoch} epoch(s){why}; keeping epoch {state.best_epoch + 1}'s weights"
            f" (best validation score)")

    model = build_model(spec, seed)
    model.load_state_dict(state.final_model_state)
    tokenizer = Tokenizer(cleaner, cats, model, config_hash=fit_hash, seed=seed, ic_shape=ic_shape,
                          config=cfg.model_dump(mode="json"), layout=TokenLayout.plan(spec))
    with open(tok_dir / METRICS_FILE, "w") as f:
        for record in state.history:
            f.write(json.dumps(record) + "\n")

    gpus = 1.0 if resolve_use_gpu(cfg.training.use_gpu, cfg.data_actors) else 0.0
    with TokenWriter(out, tokenizer.layout, validation=cleaner.split.is_validation) as writer:
        n_rows = encode_dataset(ds, tokenizer, run.ic_source, cfg.data_actors, writer, gpus)
        # the layout is fixed here, from the fit's own operators (converged, training split), and saved
        tokenizer.layout, keep = writer.trim()
        tokenizer.save(tok_dir)
        log(layout_message(tokenizer.layout, writer.fit_rows))
        writer.write(tokenizer.layout, keep, tokenizer.digest())
        health = writer.health(tokenizer.layout, keep)
    final = state.final_record
    summary = {
        "operators": n_rows, "train_rows": n_train, "validation_rows": n_val,
        "features_in": len(schema.scalar), "features_kept": len(cleaner.names_out),
        "categories": tokenizer.category_names, "codebook_sizes": list(spec.codebook_sizes),
        "encoder_codebook_sizes": {n: list(k) for n, k in zip(spec.encoder_names, spec.encoder_codebook_sizes,
                                                              strict=True)},
        "codebook_plan": plan, "layout": tokenizer.layout.to_json(),
        "epochs": state.epoch, "best_epoch": final.get("epoch"), "validation": final.get("validation"),
        "tokens": health,
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
    log(f"tokens: [{n_rows}, {len(keep)}] written to {run.where}/{DATASET_FILE} and {run.where}/{TOKENS_FILE}")
    return summary


def encode_run(out_dir: str | Path, tokenizer_dir: str | Path, actors: int = 1,
               log: Callable[[str], None] = _stage_log.info, staging_dir: str | None = None) -> int:
    """Tokens for a run directory or URI with an already trained tokenizer (Ray must be initialised);
    returns the number of operators encoded.

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
    with TokenWriter(run.local, tokenizer.layout) as writer:
        n_rows = encode_dataset(ds, tokenizer, ic_path, actors, writer,
                                1.0 if resolve_use_gpu("auto", actors) else 0.0)
        writer.write(tokenizer.layout, np.arange(len(tokenizer.layout.positions)), tokenizer.digest())
    run.publish(tokenizer=False)
    log(f"tokens: [{n_rows}, {len(tokenizer.layout.positions)}] written to {run.where}/{DATASET_FILE} and"
        f" {run.where}/{TOKENS_FILE}")
    return n_rows


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
        self.ic_source = f"{self.where}/{DATASET_FILE}"

    def dataset(self) -> Path:
        """The local ``dataset.h5`` (fetched from the bucket for a URI)."""
        path = self.local / DATASET_FILE
        if self.store is not None:
            if self.store.fetch(DATASET_FILE, path) is None:
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
            return str(self.local / TOKENIZER_DIR / "ray"), None
        return self.store.key(f"{TOKENIZER_DIR}/ray"), self.store.arrow_filesystem()

    def publish(self, tokenizer: bool) -> None:
        """Upload the stage's outputs for a URI: the tokenizer folder, ``tokens.parquet``, then
        ``dataset.h5`` (with ``/tokens``) as one object, replaced whole or not at all."""
        if self.store is None:
            return
        if tokenizer:
            self.store.upload_dir(self.local / TOKENIZER_DIR, TOKENIZER_DIR)
        self.store.upload(self.local / TOKENS_FILE, TOKENS_FILE)
        self.store.publish(self.local / DATASET_FILE, DATASET_FILE)


def _fmt(values: list[float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)

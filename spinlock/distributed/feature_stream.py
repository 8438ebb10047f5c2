"""Ray Data edges of the tokenizer: stream the feature tables, fit the cleaner, prepare and encode.

The cores (``FeatureCleaner.pass*_partial``, ``prepare_inputs``, ``Tokenizer.encode``) are plain
functions over one block; here they run as Ray Data tasks/actors over the per-shard Parquet tables:

* :func:`read_features` — ``ray.data.read_parquet`` over ``OUT/features/shard-*.parquet`` with
  ``preserve_order`` (blocks come back in file order, so merged statistics and row order are
  reproducible run to run).
* :func:`fit_cleaner` — two streaming passes; each block is reduced to small partial statistics on a
  worker and merged on the driver (never more than one partial in driver memory).
* :func:`prepare_splits` — the cleaned training / validation rows of non-diverged operators, with
  their pooled initial conditions, materialized for the multi-epoch Ray Train fit.
* :func:`encode_dataset` — tokens and learned IC embedding for every operator: encode tasks (at most
  ``tokenizer.data_actors`` at once, never the cluster's CPU count, so Ray Data's read tasks always
  find a free CPU) each keep the model in their worker process (on a GPU when the task has one); each
  encoded block goes to a :class:`~spinlock.encoding.outputs.TokenWriter` as it arrives.
"""

from __future__ import annotations

import contextlib
import pickle
import uuid
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import ray
import torch

from spinlock.encoding.cleaning import FeatureCleaner
from spinlock.encoding.icfields import ICReader
from spinlock.encoding.inputs import prepare_inputs
from spinlock.encoding.schema import FeatureSchema
from spinlock.errors import DataError
from spinlock.storage.layout import FEATURE_TABLE_GLOB, FEATURES_DIR
from spinlock.storage.remote import RemoteStore, is_remote

if TYPE_CHECKING:  # the encode tasks import it; the cleaning tasks need not (see spinlock.encoding.inputs)
    from spinlock.encoding.outputs import TokenWriter
    from spinlock.encoding.tokenizer import Tokenizer


@contextlib.contextmanager
def _parquet_datasource_v1() -> Iterator[None]:
    """Plan ``read_parquet`` on Ray Data's V1 Parquet datasource (``DataContext.use_datasource_v2``,
    restored after).

    Why: Ray 2.60's default V2 datasource lists the files again at every execution of a read, in a
    ``ListFiles`` task that starts a ``FooterReader`` actor process, and packs the quickstart's 4 tables
    into one block read by one task; V1 reads the footers once, when the read is planned, and gives
    each table its own block. The tokenize stage executes the read four times (two cleaning passes,
    prepare, encode): a warm cleaning pass over the quickstart's tables took 1.15 s on V2 and 0.24 s on
    V1 (docs/performance.md, "Tokenize overhead").
    """
    ctx = ray.data.DataContext.get_current()
    previous = ctx.use_datasource_v2
    ctx.use_datasource_v2 = False
    try:
        yield
    finally:
        ctx.use_datasource_v2 = previous


def read_features(out_dir: str | Path) -> tuple[ray.data.Dataset, FeatureSchema]:
    """The run's feature tables as one Dataset (one block per table or row group) and their schema.

    ``out_dir`` may be an object-store URI: Ray Data's read tasks then read the tables from the bucket
    on whichever node they run, through the same fsspec filesystem as every other access.
    """
    if is_remote(out_dir):
        store = RemoteStore(str(out_dir))
        fs = store.arrow_filesystem()
        names = sorted(n for n in store.listdir(FEATURES_DIR) if fnmatchcase(n, FEATURE_TABLE_GLOB))
        keys = [store.key(f"{FEATURES_DIR}/{n}") for n in names]
        schema = FeatureSchema.from_parquet_files(keys, f"{store.url}/{FEATURES_DIR}", filesystem=fs)
        with _parquet_datasource_v1():
            ds = ray.data.read_parquet(keys, filesystem=fs)
        ds.context.execution_options.preserve_order = True
        return ds, schema
    schema, files = FeatureSchema.from_parquet_dir(Path(out_dir) / FEATURES_DIR)
    with _parquet_datasource_v1():
        ds = ray.data.read_parquet([str(f) for f in files])
    ds.context.execution_options.preserve_order = True  # shared by every dataset derived from ds
    return ds, schema


def _pack(obj: object) -> pa.Table:
    return pa.table({"stats": pa.array([pickle.dumps(obj)], type=pa.binary())})


def _pass1(table: pa.Table, cleaner: FeatureCleaner) -> pa.Table:
    return _pack(cleaner.pass1_partial(cleaner.schema.batch_from_arrow(table)))


def _pass2(table: pa.Table, cleaner: FeatureCleaner) -> pa.Table:
    return _pack(cleaner.pass2_partial(cleaner.schema.batch_from_arrow(table)))


def _merged(ds: ray.data.Dataset, fn, cleaner: FeatureCleaner):
    total = None
    partials = ds.map_batches(fn, fn_kwargs={"cleaner": cleaner}, batch_format="pyarrow", batch_size=None)
    for table in partials.iter_batches(batch_size=None, batch_format="pyarrow"):
        for blob in table.column("stats").to_pylist():
            part = pickle.loads(blob)
            total = part if total is None else total.merge(part)
    return total


def fit_cleaner(ds: ray.data.Dataset, cleaner: FeatureCleaner) -> FeatureCleaner:
    """Fit ``cleaner`` on ``ds`` in two streaming passes (only its training rows count, see Split)."""
    stats = _merged(ds, _pass1, cleaner)
    if stats is None:
        raise DataError("the feature tables hold no rows")
    cleaner.fit_pass1(stats)
    return cleaner.fit_pass2(_merged(ds, _pass2, cleaner))


def _prepare(table: pa.Table, cleaner: FeatureCleaner, ic_path: str | None, ic_resolution: int) -> dict:
    """Raw block → cleaned model inputs of its non-diverged rows (+ pooled ICs, + split flag)."""
    batch = cleaner.schema.batch_from_arrow(table)
    batch = batch.select(batch.status == 0)
    ic = ICReader(ic_path).read(batch.operator_index) if ic_path else None  # opened in this process
    out = prepare_inputs(cleaner, batch, ic, ic_resolution)
    out["validation"] = cleaner.split.is_validation(batch.operator_index)
    return out


def _select(batch: dict[str, np.ndarray], validation: bool) -> dict[str, np.ndarray]:
    rows = batch["validation"] == validation
    return {k: v[rows] for k, v in batch.items() if k != "validation"}


def prepare_splits(ds: ray.data.Dataset, cleaner: FeatureCleaner, ic_path: str | None,
                   ic_resolution: int) -> tuple[ray.data.Dataset, ray.data.Dataset]:
    """Materialized (train, validation) datasets of model inputs: columns ``x`` [D'], ``temporal``
    [T', Dt'] (if any), ``ic`` [C, R, R] (if ``ic_path``), for non-diverged operators only.

    Plain tasks (no actor pool): each opens the HDF5 file for its block, which costs far less than
    the block's reads, and Ray reuses its worker processes across the stages.
    """
    prepared = ds.map_batches(
        _prepare,
        fn_kwargs={"cleaner": cleaner, "ic_path": ic_path, "ic_resolution": ic_resolution},
        batch_format="pyarrow",
        batch_size=None,
    ).materialize()
    train = prepared.map_batches(_select, fn_kwargs={"validation": False}, batch_format="numpy").materialize()
    val = prepared.map_batches(_select, fn_kwargs={"validation": True}, batch_format="numpy").materialize()
    return train, val


_ENCODERS: dict[str, tuple[Tokenizer, ICReader | None]] = {}
"""Per worker process: the tokenizer (on the process's device) and IC reader of the current encode."""


def _encode(table: pa.Table, tokenizer: Tokenizer, ic_path: str | None, key: str) -> dict[str, np.ndarray]:
    """Raw block → tokens [B, positions] and learned IC embedding [B, 28] for every row.

    The tokenizer moves to the device and the IC file opens once per worker process and encode
    (``key``), not once per block.
    """
    if key not in _ENCODERS:
        _ENCODERS.clear()  # one encode at a time per process: drop the previous one's model
        _ENCODERS[key] = (tokenizer.to("cuda" if torch.cuda.is_available() else "cpu"),
                          ICReader(ic_path) if ic_path else None)
    tokenizer, reader = _ENCODERS[key]
    batch = tokenizer.cleaner.schema.batch_from_arrow(table)
    ic = reader.read(batch.operator_index) if reader else None
    out = tokenizer.encode(batch, ic)
    cols = {"operator_index": batch.operator_index, "tokens": out.tokens}
    if out.embedding is not None:
        cols["embedding"] = out.embedding
    return cols


def encode_dataset(ds: ray.data.Dataset, tokenizer: Tokenizer, ic_path: str | None, actors: int,
                   writer: TokenWriter, num_gpus: float = 0.0) -> int:
    """Encode every row of ``ds`` into ``writer`` (tokens in the tokenizer's layout, and the learned IC
    embedding), block by block as the blocks arrive, so the driver never holds them all; returns the
    number of rows.

    At most ``actors`` encode tasks run at once (1 CPU and ``num_gpus`` GPUs each). Tasks, not an actor
    pool: they run in Ray's already started worker processes (those of the cleaning passes, with torch
    imported), where a fresh actor process paid ~5 s of start and imports before its first block (the
    quickstart's encode: 5.9 s → 3.8 s, docs/performance.md); each process keeps the model between
    blocks (:data:`_ENCODERS`).
    """
    encoded = ds.map_batches(
        _encode,
        fn_kwargs={"tokenizer": tokenizer.to("cpu"), "ic_path": ic_path, "key": uuid.uuid4().hex},
        compute=ray.data.TaskPoolStrategy(size=actors),
        batch_format="pyarrow",
        batch_size=None,
        num_cpus=1,
        num_gpus=num_gpus,
    )
    rows = 0
    for b in encoded.iter_batches(batch_size=None, batch_format="numpy"):
        writer.add(b["operator_index"].astype(np.int64), b["tokens"].astype(np.int32),
                   b["embedding"].astype(np.float32) if "embedding" in b else None)
        rows += len(b["operator_index"])
    return rows


class ShardBatches:
    """A training worker's Ray Data shard as numpy blocks, epoch after epoch, read once when it fits.

    The first pass streams the shard's blocks (``iter_batches``); if all of them together take at most
    ``cache_bytes``, they are kept (as copies, in this worker process) and later epochs iterate them
    in memory instead of executing the Ray Data pipeline again (each execution costs a second or more
    of planning and scheduling, far more than the epoch's compute on a small run). A larger shard is
    streamed every epoch, bounded by Ray Data's backpressure. Either way the batches come out of the
    same shuffle (:func:`shuffled`) over the same block sequence, so the cache changes speed, never
    results.
    """

    def __init__(self, shard, cache_bytes: int):
        self.shard = shard
        self.cache_bytes = cache_bytes
        self.blocks: list[dict[str, np.ndarray]] | None = None

    @property
    def cached(self) -> bool:
        return self.blocks is not None

    def __iter__(self):
        if self.blocks is not None:
            yield from self.blocks
            return
        kept: list[dict[str, np.ndarray]] | None = []
        size = 0
        for block in self.shard.iter_batches(batch_size=None, batch_format="numpy"):
            if kept is not None:
                size += sum(v.nbytes for v in block.values())
                if size <= self.cache_bytes:
                    kept.append({k: np.array(v) for k, v in block.items()})  # not a view of the object store
                else:
                    kept = None
            yield block
        self.blocks = kept  # only after a complete pass


def shuffled(blocks, batch_size: int, buffer_rows: int, rng: np.random.Generator | None,
             drop_last: bool):
    """Batches of ``batch_size`` rows from a sequence of column blocks.

    With ``rng``: a local shuffle — rows enter a buffer, and whenever it holds ``buffer_rows +
    batch_size`` rows a batch is drawn from it at random; at the end the remainder is permuted. A
    buffer as large as the shard is a full permutation per epoch. Without ``rng``: rows in order.
    ``drop_last`` drops the final short batch (equal step counts on every DDP rank).
    """
    buf: dict[str, np.ndarray] | None = None
    for block in blocks:
        buf = block if buf is None else {k: np.concatenate([buf[k], block[k]]) for k in buf}
        n = len(next(iter(buf.values())))
        while n >= (buffer_rows + batch_size if rng is not None else batch_size):
            if rng is not None:
                take = rng.choice(n, batch_size, replace=False)
                keep = np.ones(n, dtype=bool)
                keep[take] = False
                yield {k: v[take] for k, v in buf.items()}
                buf = {k: v[keep] for k, v in buf.items()}
            else:
                yield {k: v[:batch_size] for k, v in buf.items()}
                buf = {k: v[batch_size:] for k, v in buf.items()}
            n -= batch_size
    if buf is None:
        return
    n = len(next(iter(buf.values())))
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for i in range(0, n, batch_size):
        if drop_last and i + batch_size > n:
            break
        yield {k: v[order[i:i + batch_size]] for k, v in buf.items()}

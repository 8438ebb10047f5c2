"""Generation core: the shard plan and the shard function every executor calls.

``run_shard(cfg, spec, out_dir)`` is plain Python/torch: a unit test, a local process and a Ray actor
all call it. It builds the shard's operators, runs batched rollouts with inline features, and writes
one atomic HDF5 shard plus its Parquet feature table. The plan depends only on the config, and engine
batches are aligned to global operator indices, so the dataset is identical whatever the worker count.

This module is where a run config is unpacked: the layers below take their own sections (``design(cfg)``
for sampling, ``sim``/``storage`` for the shard writer). ``run_operators`` runs the same batches without
writing, for the feature audits.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from spinlock.config.loading import config_hash, dump_config, load_config
from spinlock.config.models import RunConfig
from spinlock.errors import SpinlockError
from spinlock.features import FeatureBlock, FeatureObserver, batch_features, feature_names
from spinlock.features import temporal_steps as feature_steps
from spinlock.ics.registry import generate_ic, get_ic_type
from spinlock.operators.registry import get_family
from spinlock.rng import derive_key
from spinlock.rollout.engine import RolloutEngine, autocast_dtype, feature_faults, resolve_device
from spinlock.sampling.space import Design, SampledSet, choices_json, sample
from spinlock.storage.durable import temp_files
from spinlock.storage.layout import CONFIG_FILE, STATUS_DIVERGED, STATUS_FAULT, parquet_path, shard_path
from spinlock.storage.parquet import export_parquet
from spinlock.storage.shard import ShardInfo, ShardWriter, inspect_shard
from spinlock.storage.zarrstore import TrajectoryArray, ZarrTrajectoryWriter, covered


@dataclass(frozen=True)
class ShardSpec:
    shard_id: int
    start: int  # first global operator index
    stop: int  # one past the last


@dataclass
class ShardSummary:
    """What a shard task returns (small: never field arrays)."""

    shard_id: int
    operators: int
    diverged: int
    faults: int  # numerical faults (status 2), not counted in ``diverged``
    sample_steps: int
    seconds: float
    path: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def plan_shards(cfg: RunConfig) -> list[ShardSpec]:
    """Contiguous ranges of ``operators_per_shard`` in Sobol order (the last one may be shorter)."""
    n, k = cfg.simulation.num_operators, cfg.sharding.operators_per_shard
    return [ShardSpec(i, s, min(s + k, n)) for i, s in enumerate(range(0, n, k))]


def design(cfg: RunConfig) -> Design:
    """The run's Sobol design: the config sections sampling reads."""
    return Design(parameters=cfg.parameters, ic_weights=tuple(cfg.initial_conditions.probabilities()),
                  num_operators=cfg.simulation.num_operators, seed=cfg.seed, scramble=cfg.sampling.scramble,
                  family=cfg.operators.family, grid=cfg.simulation.grid)


def make_ics(cfg: RunConfig, indices: np.ndarray, entries: np.ndarray, device: torch.device) -> torch.Tensor:
    """[b, C, H, W] initial conditions; operator i's field depends only on (seed, "ic", i) and its entry."""
    sim = cfg.simulation
    out = torch.empty(len(indices), sim.channels, sim.grid, sim.grid, device=device)
    for e in sorted(set(entries.tolist())):
        rows = np.flatnonzero(entries == e)
        entry = cfg.initial_conditions.mix[e]
        keys = [derive_key(cfg.seed, "ic", int(indices[r])) for r in rows]
        out[torch.as_tensor(rows, device=device)] = generate_ic(
            entry.type, entry.params, keys, sim.channels, sim.grid, device
        )
    return out


class TrajectorySink:
    """Observer storing every ``stride``-th state of a batch straight into the shard file."""

    def __init__(self, writer: ShardWriter, start: int, stride: int, dtype: str):
        self.writer, self.row0, self.stride, self.dtype = writer, start, stride, np.dtype(dtype)

    def _put(self, idx: int, x: torch.Tensor) -> None:
        self.writer.write_trajectory_step(self.row0, idx, x.detach().cpu().numpy().astype(self.dtype))

    def start(self, x0: torch.Tensor, live) -> None:  # noqa: D102 - Observer protocol
        self._put(0, x0)

    def observe(self, step: int, x: torch.Tensor, alive: torch.Tensor) -> None:  # noqa: D102
        if step % self.stride == 0:
            self._put(step // self.stride, x)

    def finish(self, status: torch.Tensor, diverged_step: torch.Tensor) -> None:  # noqa: D102
        pass


def batch_bounds(cfg: RunConfig, spec: ShardSpec) -> list[tuple[int, int]]:
    """Engine batches of a shard as global [start, stop): aligned to multiples of batch_operators."""
    b = cfg.simulation.batch_operators
    return [(s, min(s + b, spec.stop)) for s in range(spec.start, spec.stop, b)]


def build_batch(cfg: RunConfig, sampled: SampledSet, rows: slice, device: torch.device):
    """Records, derived quantities, ICs and an engine for one batch of sampled rows."""
    family = get_family(cfg.operators.family)
    idx = sampled.index[rows]
    records = [family.decode(cfg.parameters, row) for row in sampled.values[rows]]
    ic = make_ics(cfg, idx, sampled.ic_entry[rows], device)
    engine = RolloutEngine(family, records, idx.tolist(), cfg.seed, cfg.simulation, device)
    derived = [family.derived(r, cfg.simulation.channels) for r in records]
    return records, derived, ic, engine


def run_shard(
    cfg: RunConfig,
    spec: ShardSpec,
    out_dir: str | Path,
    progress: Callable[[int], None] | None = None,
    device: torch.device | None = None,
    root: str | None = None,
) -> ShardSummary:
    """Generate one shard into ``out_dir/shards`` (atomic) and its Parquet table into ``out_dir/features``.

    ``root``: the run's real output when ``out_dir`` is a staging folder (``s3://...``); Zarr trajectories
    (``storage.trajectories.format: zarr``) are written there directly. Default: ``out_dir``.
    """
    t0 = time.perf_counter()
    device = device or resolve_device(cfg.simulation.device)
    sim = cfg.simulation
    sampled = sample(design(cfg), range(spec.start, spec.stop))
    path = shard_path(out_dir, spec.shard_id)
    chash = config_hash(cfg)
    zarr_writer = None
    if cfg.storage.trajectories.format == "zarr":
        array = TrajectoryArray.of(sim, cfg.storage, chash)
        zarr_writer = ZarrTrajectoryWriter(array, root or out_dir, spec.start, spec.stop)
    writer = ShardWriter(
        path, spec.shard_id, sampled.index, sim=sim, storage=cfg.storage, seed=cfg.seed, config=dump_config(cfg),
        config_hash=chash, param_names=sampled.names, choices_json=choices_json(cfg.parameters),
        feature_names=feature_names(cfg), temporal_steps=feature_steps(cfg), trajectories=zarr_writer,
        device=device.type,
    )
    diverged = faults = 0
    try:
        for b0, b1 in batch_bounds(cfg, spec):
            rows = slice(b0 - spec.start, b1 - spec.start)
            r0 = rows.start
            idx = sampled.index[rows]
            records, derived, ic, engine = build_batch(cfg, sampled, rows, device)
            fobs = FeatureObserver(cfg, idx.tolist(), device)
            observers: list = [fobs]
            if cfg.storage.trajectories.store:
                st = cfg.storage.trajectories
                observers.append(TrajectorySink(writer, r0, st.stride, st.dtype))
            result = engine.run(ic, observers)
            features = batch_features(cfg, ic, sampled.values[rows], derived, fobs)
            status = result.status.numpy()
            feature_faults({k: b.values for k, b in features.items()}, status, idx)
            entries = [cfg.initial_conditions.mix[e] for e in sampled.ic_entry[rows]]
            writer.write_rows(
                r0,
                parameters__unit=sampled.unit[rows],
                parameters__values=sampled.values[rows],
                ics__fields=ic.cpu().numpy(),
                ics__type=[e.label for e in entries],
                ics__generator=[e.type for e in entries],
                ics__tier=np.array([get_ic_type(e.type).tier for e in entries], np.int8),
                ics__params=[json.dumps(e.params, sort_keys=True) for e in entries],
                status=status,
                status_step=result.diverged_step.numpy(),
            )
            writer.write_features(r0, features)
            diverged += int((status == STATUS_DIVERGED).sum())
            faults += int((status == STATUS_FAULT).sum())
            if progress is not None:
                progress(len(idx))
        n = spec.stop - spec.start
        summary = ShardSummary(spec.shard_id, n, diverged, faults, n * sim.realizations * sim.steps,
                               time.perf_counter() - t0, str(path))
        writer.commit({"summary": summary.to_json()})
    except BaseException:
        writer.abort()
        raise
    export_parquet(path, parquet_path(out_dir, spec.shard_id))
    return summary


@dataclass(frozen=True)
class OperatorFeatures:
    """What :func:`run_operators` returns: every family's features and the engine status, in operator order."""

    blocks: dict[str, FeatureBlock]
    """Concatenated blocks of all operators, by family."""
    status: np.ndarray
    """[N] int8 engine status (1 = diverged)."""


def run_operators(cfg: RunConfig, indices: Sequence[int], device: torch.device | None = None) -> OperatorFeatures:
    """Sample, build and roll out the given operators batch by batch as a shard would, with features, writing
    nothing: what the feature audits (``features.audit``, bench/features.py) and precision tests inspect."""
    device = device or torch.device("cpu")
    idx = np.asarray(list(indices), dtype=np.int64)
    sampled = sample(design(cfg), idx)
    b = cfg.simulation.batch_operators
    parts: dict[str, list[np.ndarray]] = {}
    names: dict[str, tuple[str, ...]] = {}
    status = []
    for s in range(0, len(idx), b):
        rows = slice(s, min(s + b, len(idx)))
        _, derived, ic, engine = build_batch(cfg, sampled, rows, device)
        obs = FeatureObserver(cfg, idx[rows].tolist(), device)
        result = engine.run(ic, [obs])
        for k, blk in batch_features(cfg, ic, sampled.values[rows], derived, obs).items():
            parts.setdefault(k, []).append(blk.values)
            names[k] = blk.names
        status.append(result.status.numpy())
    out = {k: FeatureBlock(np.concatenate(v), names[k], {}) for k, v in parts.items()}
    return OperatorFeatures(out, np.concatenate(status))


def prepare_output(cfg: RunConfig, out_dir: str | Path) -> Path:
    """Create ``out_dir`` and write config.yaml; refuse a directory that holds a different run.

    A resume may change execution-only sections (``distributed``, ``tokenizer``); config.yaml is then
    rewritten to the config actually used.
    """
    out = Path(out_dir)
    cfg_file = out / CONFIG_FILE
    if cfg_file.exists():
        try:
            existing = load_config(cfg_file)
        except SpinlockError as e:
            raise SpinlockError(f"{out} holds an unreadable {CONFIG_FILE} ({e}); use a new --out") from None
        if config_hash(existing) != config_hash(cfg):
            raise SpinlockError(
                f"{out} already holds a run with a different config (hash {config_hash(existing)} vs"
                f" {config_hash(cfg)}); nothing was changed — use a new --out or the same config to resume"
            )
    out.mkdir(parents=True, exist_ok=True)
    tmp = cfg_file.with_suffix(".yaml.tmp")
    tmp.write_text(dump_config(cfg))
    tmp.replace(cfg_file)
    return out


def check_runnable(cfg: RunConfig, device: torch.device | None = None) -> None:
    """Fail before any work on settings this machine cannot run: the one precision rule of generation.

    Reduced precision (bf16/fp16) is a CUDA setting here, although the engine also runs it under CPU
    autocast (tests use that to emulate CUDA); and torch must be able to autocast to it on the device.
    """
    dev = device or resolve_device(cfg.simulation.device)
    if cfg.simulation.precision != "fp32" and dev.type != "cuda":
        raise SpinlockError(
            f"simulation.precision: {cfg.simulation.precision!r} needs CUDA; this run would use {dev}"
            " (use fp32 on CPU)"
        )
    autocast_dtype(cfg.simulation.precision, dev)


def pending_shards(
    cfg: RunConfig, out_dir: str | Path, root: str | None = None, infos: dict[int, ShardInfo] | None = None
) -> tuple[list[ShardSpec], list[ShardSpec]]:
    """Split the plan into (complete, to_run); partial/corrupt/mismatched shard files are removed.

    ``infos``: filled with what the scan read of each complete shard (indices, labels), for
    ``merge_shards(..., shards=infos)``, so that the merge does not open those shards again.

    With Zarr trajectories a shard is complete only if its chunks are written too (under ``root``, the
    run's real output, default ``out_dir``); a shard file whose chunks are missing is regenerated.
    """
    specs, chash = plan_shards(cfg), config_hash(cfg)
    chunks_ok = [True] * len(specs)
    if cfg.storage.trajectories.format == "zarr":
        chunks_ok = covered(root or str(out_dir), [(s.start, s.stop) for s in specs])
    done, todo = [], []
    for spec, ok in zip(specs, chunks_ok, strict=True):
        path = shard_path(out_dir, spec.shard_id)
        found = inspect_shard(path, chash, labels=infos is not None)
        if not isinstance(found, str) and ok:
            if infos is not None:
                infos[spec.shard_id] = found
            if not parquet_path(out_dir, spec.shard_id).exists():
                export_parquet(path, parquet_path(out_dir, spec.shard_id))
            done.append(spec)
            continue
        path.unlink(missing_ok=True)
        todo.append(spec)
    remove_temporaries(out_dir, todo)
    return done, todo


def remove_temporaries(out_dir: str | Path, specs: Sequence[ShardSpec]) -> None:
    """Delete the shard and feature-table temporaries that interrupted attempts at ``specs`` left.

    A writer on a node cut off from the cluster may still hold one: its rename then fails, and the shard
    stays the one that was committed (or is generated again).
    """
    for spec in specs:
        for tmp in temp_files(shard_path(out_dir, spec.shard_id)) + temp_files(parquet_path(out_dir, spec.shard_id)):
            tmp.unlink(missing_ok=True)


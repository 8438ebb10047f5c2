"""Rebuild one operator from its stored record and re-run it, bit-identically on CPU.

Engine batches are aligned to global operator indices and their composition is part of the numerics
(grouped convolutions), so replay re-runs the operator's whole batch (at most ``batch_operators``
operators) and keeps its row: the result equals generation bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
import yaml

from spinlock.config.loading import config_from_dict
from spinlock.config.models import RunConfig
from spinlock.errors import DataError
from spinlock.storage.layout import DATASET_FILE
from spinlock.storage.zarrstore import open_trajectories


def resolve_dataset(path: str | Path) -> Path:
    """The local ``dataset.h5`` of a run folder or file; a URI is fetched to the node's cache first."""
    from spinlock.storage.remote import local_copy

    p = local_copy(path)
    if p.is_dir():
        p = p / DATASET_FILE
    if not p.is_file():
        raise DataError(f"no dataset at {p} (expected a run directory or an .h5 file)")
    return p


def config_of(path: str | Path) -> RunConfig:
    """The resolved config stored in a dataset or shard file."""
    p = resolve_dataset(path)
    with h5py.File(p, "r") as f:
        raw = f.attrs.get("config")
        if raw is None:
            raise DataError(f"{p}: no 'config' attribute (not a Spinlock file?)")
    return config_from_dict(yaml.safe_load(raw), f"{p}:attrs/config")


class _Recorder:
    def __init__(self, row: int):
        self.row, self.states = row, []

    def start(self, x0, live) -> None:
        self.states.append(x0[self.row].cpu().clone())

    def observe(self, step, x, alive) -> None:
        self.states.append(x[self.row].cpu().clone())

    def finish(self, status, diverged_step) -> None:
        self.status = int(status[self.row])


@dataclass
class Replay:
    index: int
    trajectory: np.ndarray  # [M, T+1, C, H, W] float32, every step
    ic: np.ndarray  # [C, H, W]
    status: int


def replay_operator(path: str | Path, index: int, device: torch.device | None = None) -> Replay:
    from spinlock.generate import build_batch
    from spinlock.sampling.space import sample

    cfg = config_of(path)
    n, B = cfg.simulation.num_operators, cfg.simulation.batch_operators
    if not 0 <= index < n:
        raise DataError(f"--operator {index} out of range: the dataset has operators 0..{n - 1}")
    b0 = (index // B) * B
    b1 = min(b0 + B, n)
    sampled = sample(cfg, range(b0, b1))
    dev = device or torch.device("cpu")
    _, _, ic, engine = build_batch(cfg, sampled, slice(0, b1 - b0), dev)
    rec = _Recorder(index - b0)
    engine.run(ic, [rec])
    traj = torch.stack(rec.states, dim=1).numpy()
    return Replay(index, traj, ic[index - b0].cpu().numpy(), rec.status)


def compare_with_stored(path: str | Path, rep: Replay) -> dict[str, object]:
    """Compare a replay with the stored IC, status and (strided, cast) trajectory; NaN == NaN."""
    p = resolve_dataset(path)
    with h5py.File(p, "r") as f:
        idx = f["operators/index"][()]
        rows = np.flatnonzero(idx == rep.index)
        if rows.size != 1:
            raise DataError(f"{p}: operator {rep.index} found {rows.size} times")
        r = int(rows[0])
        out: dict[str, object] = {
            "ic_equal": bool(np.array_equal(f["ics/fields"][r], rep.ic)),
            "status_equal": int(f["status"][r]) == rep.status,
        }
        ds = open_trajectories(f, p)  # /trajectories, or the run's Zarr array
        if ds is not None:
            stride = int(ds.attrs["stride"])
            stored = ds[r]
            mine = rep.trajectory[:, ::stride].astype(ds.dtype)
            out["trajectory_equal"] = bool(np.array_equal(stored, mine, equal_nan=True))
            diff = np.abs(stored.astype(np.float64) - mine.astype(np.float64))
            out["trajectory_max_abs_diff"] = float(np.nanmax(diff)) if np.isfinite(diff).any() else 0.0
    return out

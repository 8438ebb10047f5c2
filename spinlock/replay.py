"""Rebuild one operator from the config stored in a dataset, re-run it, and check the stored record.

The config and seed determine every operator: replay samples the operator's parameters again, builds
its weights, IC and noise, and re-runs it. The stored record is then checked against that rebuild:

* parameters: ``/parameters/values`` and ``/parameters/unit`` against the rebuilt row, always, to
  ``PARAM_RTOL`` (float64 mapping; the tolerance only absorbs a last-bit ``exp`` difference between
  CPUs), naming each parameter that differs;
* IC, status and trajectory: **bit for bit** when generation and replay both ran on CPU in the same
  precision (the reproducibility contract holds there), otherwise **within tolerance**: generation on
  CUDA (kernels and TF32 convolutions differ from CPU), or in a precision this replay cannot run in.
  The generating device and precision come from the file's root attrs (format ≥ 1.1), see
  :func:`generation_of`.

Engine batches are aligned to global operator indices and their composition is part of the numerics
(grouped convolutions), so replay re-runs the operator's whole batch (at most ``batch_operators``
operators) and keeps its row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch
import yaml

from spinlock.config.loading import config_from_dict
from spinlock.config.models import RunConfig
from spinlock.config.parameters import BooleanSpec, ChoiceSpec, IntegerSpec
from spinlock.errors import DataError, SpinlockError
from spinlock.generate import build_batch, check_runnable, design
from spinlock.rng import torch_generator
from spinlock.rollout.engine import resolve_device
from spinlock.sampling.space import sample
from spinlock.storage.layout import DATASET_FILE, SHARDS_DIR, STATUS_FAULT, STATUS_OK, shard_name
from spinlock.storage.reader import dataset_file
from spinlock.storage.rows import read_table
from spinlock.storage.zarrstore import open_trajectories

PARAM_RTOL = 1e-12
"""Relative tolerance of the parameter check (stored float64 values against the rebuilt ones)."""
IC_ATOL = 1e-4
"""Tolerance comparison: max |Δ| of the IC (unit-variance fields built in float32 on the device; CPU and
CUDA FFTs differ by ~1e-6)."""
STEP_RTOL = {"fp32": 1e-2, "fp16": 1e-2, "bf16": 4e-2}
"""Tolerance comparison: relative RMS error RMS(Δ) / RMS(stored) of the first stored step after the IC,
keyed by the coarser of the generating and replaying precisions. Measured with bench/replay_tolerance.py
(docs/dataset-format.md): bf16 against fp32 reaches 0.028 at step 4 of the quickstarts, an operator with
other weights is ≥ 0.063 off. fp16 and TF32 (which CUDA may use for fp32 convolutions) keep 3 more bits
than bf16, so 1e-2 leaves them the same margin."""
UNIT_ROUNDOFF = {"fp32": 2.0**-11, "fp16": 2.0**-11, "bf16": 2.0**-8}
"""Relative IC perturbation of the spread run, keyed like STEP_RTOL (fp32: TF32, which CUDA may use)."""
SPREAD_FACTOR = 3.0
"""The step tolerance is raised to SPREAD_FACTOR × this operator's spread where that is larger: rounding
differences grow along sensitive rollouts, which a fixed tolerance would call a mismatch (at step 10 of
the quickstart, bf16 exceeds 0.04 on 10% of the operators; with the spread, on 1 of 61)."""
TOL_CAP = 0.5
"""The spread raises the step tolerance at most to this (records with other weights differ by ~1)."""
_COARSER = ("fp32", "fp16", "bf16")


def coarser(a: str, b: str) -> str:
    return max(a, b, key=_COARSER.index)


def bit_exact(gen: Generation, device: str, precision: str) -> bool:
    """Whether a replay on ``device`` in ``precision`` must equal generation bit for bit (CPU, one precision)."""
    return gen.device == "cpu" and device == "cpu" and gen.precision == precision


def config_of(path: str | Path) -> RunConfig:
    """The resolved config stored in a dataset or shard file."""
    p = dataset_file(path)
    with h5py.File(p, "r") as f:
        raw = f.attrs.get("config")
        if raw is None:
            raise DataError(f"{p}: no 'config' attribute (not a Spinlock file?)")
    return config_from_dict(yaml.safe_load(raw), f"{p}:attrs/config")


@dataclass(frozen=True)
class Generation:
    """How an operator was generated: device type (None: not recorded), precision, and where that was read."""

    device: str | None
    precision: str
    source: str


def _attr(attrs: h5py.AttributeManager, name: str) -> str | None:
    v = attrs.get(name)
    return None if v is None else str(v.decode() if isinstance(v, bytes) else v)


def generation_of(path: str | Path, index: int, cfg: RunConfig) -> Generation:
    """The device and precision operator ``index`` was generated with.

    Read from the file's root attrs; a dataset.h5 whose shards ran on several devices (``cpu+cuda``) is
    resolved through the operator's shard when it is present. Files written before format 1.1 record
    neither: the precision is then the config's (the only one the engine ran), and the device is known
    only when the config names one or the precision needed CUDA (it did before format 1.1).
    """
    p = dataset_file(path)
    with h5py.File(p, "r") as f:
        device, precision = _attr(f.attrs, "device"), _attr(f.attrs, "precision")
    source = f"root attrs of {p.name}"
    if (device is None or "+" in device) and p.name == DATASET_FILE:
        shard = p.parent / SHARDS_DIR / shard_name(index // cfg.sharding.operators_per_shard)
        if shard.is_file():
            with h5py.File(shard, "r") as f:
                if (d := _attr(f.attrs, "device")) is not None:
                    device, precision = d, _attr(f.attrs, "precision")
                    source = f"root attrs of {SHARDS_DIR}/{shard.name}"
    if precision is None:
        precision = cfg.simulation.precision
        source = f"{p.name} predates the device/precision attrs (format 1.0): inferred from its config"
        if cfg.simulation.device != "auto":
            device = cfg.simulation.device
        elif precision != "fp32":
            device = "cuda"
    if device is not None and "+" in device:
        source += f" (shards on {device}; the operator's shard is not here)"
        device = None
    return Generation(device, precision, source)


class _Recorder:
    def __init__(self, row: int):
        self.row, self.states = row, []

    def start(self, x0, live) -> None:
        self.states.append(x0[self.row].cpu().float().clone())

    def observe(self, step, x, alive) -> None:
        self.states.append(x[self.row].cpu().float().clone())

    def finish(self, status, diverged_step) -> None:
        self.status = int(status[self.row])


@dataclass
class Replay:
    index: int
    trajectory: np.ndarray  # [M, T+1, C, H, W] float32, every step
    ic: np.ndarray  # [C, H, W]
    status: int
    unit: np.ndarray  # [P] rebuilt Sobol coordinates (NaN for fixed parameters)
    values: np.ndarray  # [P] rebuilt mapped values (choices as index)
    names: tuple[str, ...]
    device: str  # where the replay ran
    precision: str  # the precision it ran in
    generation: Generation
    spread: np.ndarray | None = None  # [M, T+1, C, H, W]: :func:`spread_run`, made by tolerance comparisons


def _replay_device(kind: str, gen: Generation) -> torch.device:
    """``auto``: the generating device when this machine has it, else CPU."""
    if kind == "auto":
        return resolve_device("cuda" if gen.device == "cuda" and torch.cuda.is_available() else "cpu")
    return resolve_device(kind)


def _with_precision(cfg: RunConfig, precision: str) -> RunConfig:
    return cfg.model_copy(update={"simulation": cfg.simulation.model_copy(update={"precision": precision})})


def replay_operator(path: str | Path, index: int, device: str = "auto") -> Replay:
    """Re-run operator ``index`` of the dataset at ``path`` on ``device`` (``auto``, ``cpu``, ``cuda``).

    It runs in the generating precision when ``device`` supports it (``generate.check_runnable``), else
    in fp32; :func:`compare_with_stored` then compares within tolerance.
    """
    cfg = config_of(path)
    n = cfg.simulation.num_operators
    if not 0 <= index < n:
        raise DataError(f"--operator {index} out of range: the dataset has operators 0..{n - 1}")
    gen = generation_of(path, index, cfg)
    dev = _replay_device(device, gen)
    run_cfg = _with_precision(cfg, gen.precision)
    try:
        check_runnable(run_cfg, dev)
    except SpinlockError:
        run_cfg = _with_precision(cfg, "fp32")
    sampled, row, ic, traj, status = _rerun(run_cfg, index, dev)
    return Replay(index, traj, ic, status, sampled.unit[row], sampled.values[row], sampled.names, dev.type,
                  run_cfg.simulation.precision, gen)


def _rerun(cfg: RunConfig, index: int, dev: torch.device, ic_eps: float = 0.0):
    """Run operator ``index``'s engine batch; ``ic_eps``: perturb the IC by that relative amount (keyed noise).

    Returns (sampled batch, the operator's row in it, its IC, trajectory [M, T+1, C, H, W], status)."""
    n, B = cfg.simulation.num_operators, cfg.simulation.batch_operators
    b0 = (index // B) * B
    b1 = min(b0 + B, n)
    sampled = sample(design(cfg), range(b0, b1))
    _, _, ic, engine = build_batch(cfg, sampled, slice(0, b1 - b0), dev)
    if ic_eps:
        g = torch_generator(cfg.seed, "replay-spread", index)
        ic = ic * (1 + ic_eps * torch.randn(ic.shape, generator=g).to(ic.device))
    row = index - b0
    rec = _Recorder(row)
    engine.run(ic, [rec])
    return sampled, row, ic[row].cpu().numpy(), torch.stack(rec.states, dim=1).numpy(), rec.status


def spread_run(path: str | Path, rep: Replay) -> np.ndarray:
    """The replay again from an IC perturbed by the unit roundoff of the coarser precision: how far
    rounding-sized differences grow on this operator (used by tolerance comparisons only)."""
    cfg = _with_precision(config_of(path), rep.precision)
    eps = UNIT_ROUNDOFF[coarser(rep.generation.precision, rep.precision)]
    return _rerun(cfg, rep.index, torch.device(rep.device), eps)[3]


@dataclass(frozen=True)
class Check:
    name: str  # parameters | ic | status | trajectory
    ok: bool
    detail: str


@dataclass
class Comparison:
    """Result of :func:`compare_with_stored`: which comparison was made, and each check with its numbers."""

    mode: str  # "bit-exact" | "tolerance"
    reason: str
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)


def _shown(spec, v: float) -> str:
    """A stored/rebuilt value as the parameter reads (choices by value, with their index)."""
    if isinstance(spec, ChoiceSpec) and float(v).is_integer() and 0 <= v < len(spec.values):
        return f"{spec.values[int(v)]!r} (choice {int(v)})"
    if isinstance(spec, IntegerSpec | BooleanSpec) and float(v).is_integer():
        return str(int(v))
    return repr(float(v))


def _parameter_check(cfg: RunConfig, stored_names: list[str], unit: np.ndarray, values: np.ndarray,
                     rep: Replay) -> Check:
    if stored_names != list(rep.names):
        return Check("parameters", False, f"stored parameter names {stored_names} differ from the config's"
                                          f" {list(rep.names)}")
    diffs = []
    for j, name in enumerate(rep.names):
        spec = cfg.parameters[name]
        if not np.isclose(values[j], rep.values[j], rtol=PARAM_RTOL, atol=0.0, equal_nan=True):
            diffs.append(f"{name}: stored {_shown(spec, values[j])}, rebuilt {_shown(spec, rep.values[j])}")
        if not np.isclose(unit[j], rep.unit[j], rtol=PARAM_RTOL, atol=0.0, equal_nan=True):
            diffs.append(f"{name} (unit coordinate): stored {float(unit[j])!r}, rebuilt {float(rep.unit[j])!r}")
    if diffs:
        return Check("parameters", False, f"{len(diffs)} stored value(s) differ from the rebuilt operator: "
                                          + "; ".join(diffs))
    return Check("parameters", True, f"all {len(rep.names)} values and unit coordinates equal the rebuilt"
                                     f" operator's (to {PARAM_RTOL:g} relative)")


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    d = d[np.isfinite(d)]
    return float(d.max()) if d.size else 0.0


def step_error(stored: np.ndarray, mine: np.ndarray) -> float:
    """RMS(Δ) / RMS(stored) of one stored step (all realizations); inf when the non-finite entries differ.

    The RMS, not the max: one grid point amplifies rounding more than the field does (bf16 max|Δ|/RMS
    reaches 0.27 where the RMS ratio stays below 0.03)."""
    fs, fm = np.isfinite(stored), np.isfinite(mine)
    if not np.array_equal(fs, fm):
        return float("inf")
    if not fs.any():
        return 0.0
    s, m = stored[fs].astype(np.float64), mine[fm].astype(np.float64)
    rms = float(np.sqrt(np.mean(s * s)))
    return float(np.sqrt(np.mean((s - m) ** 2))) / (rms if rms > 0 else 1.0)


def compare_with_stored(path: str | Path, rep: Replay) -> Comparison:
    """Check the stored parameters, IC, status and (strided, cast) trajectory of ``rep.index``."""
    p = dataset_file(path)
    cfg = config_of(p)
    gen = rep.generation
    exact = bit_exact(gen, rep.device, rep.precision)
    made = f"generated on {gen.device or 'an unrecorded device'} in {gen.precision} ({gen.source})," \
           f" replayed on {rep.device} in {rep.precision}"
    coarse = coarser(gen.precision, rep.precision)
    rtol = STEP_RTOL[coarse]
    cmp = Comparison("bit-exact", made) if exact else Comparison(
        "tolerance", f"{made}: IC max|Δ| ≤ {IC_ATOL:g}, first stored step RMS(Δ)/RMS ≤ {rtol:g} ({coarse}) or"
                     f" {SPREAD_FACTOR:g} × the operator's spread, whichever is larger")
    with h5py.File(p, "r") as f:
        idx = read_table(f["operators/index"])
        rows = np.flatnonzero(idx == rep.index)
        if rows.size != 1:
            raise DataError(f"{p}: operator {rep.index} found {rows.size} times")
        r = int(rows[0])
        names = [str(x) for x in f["parameters/values"].attrs["names"]]
        cmp.checks.append(_parameter_check(cfg, names, f["parameters/unit"][r], f["parameters/values"][r], rep))
        ic = f["ics/fields"][r]
        d_ic = _max_abs(ic, rep.ic)
        if exact:
            same = np.array_equal(ic, rep.ic)
            cmp.checks.append(Check("ic", same, "bit-identical" if same else f"differs: max|Δ| {d_ic:.3g}"))
        else:
            ok = d_ic <= IC_ATOL and np.array_equal(np.isfinite(ic), np.isfinite(rep.ic))
            cmp.checks.append(Check("ic", ok, f"max|Δ| {d_ic:.3g} {'≤' if ok else '>'} {IC_ATOL:g}"))
        stored_status = int(f["status"][r])
        if stored_status == STATUS_FAULT and int(f["status_step"][r]) == -1:  # a feature fault: rollout was ok
            stored_status = STATUS_OK
        same = stored_status == rep.status
        detail = f"stored {stored_status}, replayed {rep.status}"
        if exact or same:
            cmp.checks.append(Check("status", same, detail))
        else:
            cmp.notes.append(f"status {detail}: near the divergence threshold another precision or device may"
                             " cross it at another step (not counted as a mismatch in a tolerance comparison)")
        ds = open_trajectories(f, p)  # /trajectories, or the run's Zarr array
        if ds is not None:
            stride = int(ds.attrs["stride"])
            stored = ds[r]
            mine = rep.trajectory[:, ::stride].astype(ds.dtype)
            Ts = stored.shape[1]
            bitwise = bool(np.array_equal(stored, mine, equal_nan=True))
            if exact:
                detail = f"{Ts} stored steps bit-identical" if bitwise else \
                    f"differs: max|Δ| {_max_abs(stored, mine):.3g} over {Ts} stored steps"
                cmp.checks.append(Check("trajectory", bitwise, detail))
            elif Ts > 1:
                errs = [step_error(stored[:, s], mine[:, s]) for s in range(1, Ts)]
                if rep.spread is None:
                    rep.spread = spread_run(p, rep)
                spread = step_error(mine[:, 1], rep.spread[:, stride].astype(ds.dtype))
                tol = max(rtol, min(SPREAD_FACTOR * spread, TOL_CAP))
                if SPREAD_FACTOR * spread > TOL_CAP:
                    cmp.notes.append(f"this operator's spread ({spread:.3g}) would raise the tolerance above"
                                     f" {TOL_CAP:g}; it is capped there, so a correct record of a rollout this"
                                     " sensitive may still be reported as a trajectory mismatch")
                ok = errs[0] <= tol
                beyond = [s for s, e in zip(range(1, Ts), errs, strict=True) if e > tol]
                detail = (f"step {stride}: RMS(Δ)/RMS {errs[0]:.3g} {'≤' if ok else '>'} {tol:.3g}"
                          f" (spread: an IC perturbed by {UNIT_ROUNDOFF[coarse]:.3g} relative moves {spread:.3g});"
                          f" over all {Ts} stored steps max {max(errs):.3g}"
                          + (f", above the tolerance from step {beyond[0] * stride}" if beyond else "")
                          + f"; bit-identical: {'yes' if bitwise else 'no'}")
                cmp.checks.append(Check("trajectory", ok, detail))
                if ok and beyond:
                    cmp.notes.append("later steps are informational: rounding differences grow along sensitive"
                                     " (chaotic or unstable) rollouts, so only the first stored step is held"
                                     " to the tolerance")
    return cmp

"""Tiny synthetic run directories in the output contract, for the visualization tests and bench.

Operator ``i`` has a closed-form rollout (so replay can be faked exactly and plots checked)::

    u[m, t, c, y, x] = a_i * sin(2π k_i x / W + ω_i t + c) * cos(2π y / H) + σ_i * ξ[m, t, c, y, x]

with wavenumber ``k_i = 1 + i % 3``, amplitude ``a_i``, phase speed ``ω_i`` and noise level ``σ_i``
(ξ standard normal from ``spinlock.rng``). Operators share a coarse token exactly when they share
``k_i``. Diverged operators (status 1) hold NaN from their divergence step on, as the engine writes.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import yaml

from spinlock.encoding.layout import Position, TokenLayout
from spinlock.rng import numpy_rng

SUMMARY_NAMES = [
    "spatial.std.mean",
    "spatial.std.max",
    "spectral.peak_k.mean",
    "stochastic.spread.mean",
    "temporal.speed.mean",
    "spatial.mean.mean",
]
INITIAL_NAMES = ["ic.std", "ic.peak_k", "ic.max"]
ARCH_NAMES = ["arch.depth", "arch.width"]
TEMPORAL_NAMES = ["energy", "roughness"]
CATEGORIES = ["amplitude", "structure"]


@dataclass(frozen=True)
class SyntheticRun:
    out: Path
    n: int
    m: int
    steps: int
    stride: int
    channels: int
    grid: int
    k: np.ndarray
    """[N] wavenumber of each operator (= coarse token of category 0 minus 1)."""
    diverged: np.ndarray
    """[N] bool."""


def operator_params(i: int, seed: int) -> tuple[int, float, float, float]:
    """``(k, amplitude, omega, sigma)`` of operator ``i``."""
    r = numpy_rng(seed, "synthetic.params", i)
    return 1 + i % 3, float(r.uniform(0.5, 2.0)), float(r.uniform(0.05, 0.5)), float(r.uniform(0.0, 0.4))


def rollout(i: int, seed: int, m: int, steps: int, channels: int, grid: int, diverge_at: int | None) -> np.ndarray:
    """Closed-form rollout of operator ``i`` at every step 0..steps → float32 [M, T+1, C, H, W]."""
    k, a, w, s = operator_params(i, seed)
    t = np.arange(steps + 1, dtype=np.float64)[:, None, None, None]
    c = np.arange(channels, dtype=np.float64)[None, :, None, None]
    y = np.arange(grid, dtype=np.float64)[None, None, :, None] / grid
    x = np.arange(grid, dtype=np.float64)[None, None, None, :] / grid
    base = a * np.sin(2 * np.pi * k * x + w * t + c) * np.cos(2 * np.pi * y)
    noise = numpy_rng(seed, "synthetic.noise", i).standard_normal((m, steps + 1, channels, grid, grid))
    u = (base[None] + s * noise).astype(np.float32)
    if diverge_at is not None:
        u[:, diverge_at:] = np.nan
    return u


def make_run(
    out: str | Path,
    n: int = 9,
    m: int = 2,
    steps: int = 8,
    stride: int = 1,
    channels: int = 3,
    grid: int = 16,
    seed: int = 0,
    store_trajectories: bool = True,
    tokens: bool = True,
    tokenizer_dir: bool = True,
    temporal: bool = True,
    diverged: tuple[int, ...] = (4,),
) -> SyntheticRun:
    """Write ``out/{config.yaml, dataset.h5, tokenizer/}`` for ``n`` closed-form operators."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "name": "synthetic",
        "seed": seed,
        "simulation": {
            "num_operators": n,
            "grid": grid,
            "channels": channels,
            "steps": steps,
            "realizations": m,
        },
        "storage": {"trajectories": {"store": store_trajectories, "stride": stride}},
    }
    text = yaml.safe_dump(config)
    (out / "config.yaml").write_text(text)
    div = np.zeros(n, bool)
    div[[i for i in diverged if i < n]] = True
    trajs = [rollout(i, seed, m, steps, channels, grid, steps // 2 if div[i] else None) for i in range(n)]
    ks = np.array([operator_params(i, seed)[0] for i in range(n)])
    stored = np.arange(0, steps + 1, stride)

    with warnings.catch_warnings():  # diverged operators: all-NaN slices are expected here
        warnings.simplefilter("ignore", RuntimeWarning)
        summary = np.stack([_summary(u) for u in trajs]).astype(np.float32)
        summary[div] = np.nan  # diverged operators carry NaN features, as the pipeline writes them
        initial = np.stack([[np.std(u[0, 0]), ks[i], np.max(u[0, 0])] for i, u in enumerate(trajs)]).astype(np.float32)
        arch = np.stack([[1 + i % 4, 8 * (1 + i % 2)] for i in range(n)]).astype(np.float32)
        t_steps = np.arange(0, steps + 1, 2)
        temp = np.stack(
            [
                [[np.nanmean(u[:, t] ** 2), np.nanmean(np.abs(np.diff(u[:, t], axis=-1)))] for t in t_steps]
                for u in trajs
            ]
        ).astype(np.float32)
    with h5py.File(out / "dataset.h5", "w") as f:
        f.attrs.update(format_version=1, seed=seed, config=text)
        f["operators/index"] = np.arange(n, dtype=np.int64)
        p = f.create_dataset("parameters/values", data=np.stack([operator_params(i, seed) for i in range(n)]))
        p.attrs["names"] = ["k", "amplitude", "omega", "sigma"]
        p.attrs["choices"] = json.dumps({})
        f["ics/fields"] = np.stack([u[0, 0] for u in trajs])
        f["ics/type"] = np.array(["sine", "cosine", "noise"], dtype=object)[np.arange(n) % 3].astype("S")
        f["status"] = div.astype(np.int8)
        if store_trajectories:
            d = f.create_dataset("trajectories", data=np.stack([u[:, stored] for u in trajs]))
            d.attrs["stride"] = stride
        for fam, names, values in (
            ("initial", INITIAL_NAMES, initial),
            ("architecture", ARCH_NAMES, arch),
            ("summary", SUMMARY_NAMES, summary),
        ):
            f.create_dataset(f"features/{fam}", data=values).attrs["names"] = names
        if temporal:
            d = f.create_dataset("features/temporal", data=temp)
            d.attrs["names"] = TEMPORAL_NAMES
            d.attrs["stride"] = 2
        if tokens:
            codes = np.zeros((n, len(CATEGORIES), 3), np.int32)
            codes[:, 0, 0] = ks - 1
            codes[:, 1, 0] = np.arange(n) % 2
            codes[:, :, 1] = np.arange(n)[:, None] % 4
            codes[:, :, 2] = np.arange(n)[:, None] % 5
            d = f.create_dataset("tokens", data=codes.reshape(n, -1))
            TokenLayout(tuple(CATEGORIES), tuple(Position(c, lv, 8) for c in CATEGORIES for lv in (1, 2, 3))
                        ).write_attrs(d.attrs)
    if tokenizer_dir:
        tok = out / "tokenizer"
        tok.mkdir(exist_ok=True)
        cats = {
            "categories": [
                {"name": "amplitude", "features": ["spatial.std.mean", "spatial.std.max", "ic.std"]},
                {
                    "name": "structure",
                    "features": [
                        "summary.spectral.peak_k.mean",
                        "ic.peak_k",
                        "temporal.speed.mean",
                        "not.a.feature",
                    ],
                },
            ]
        }
        (tok / "categories.json").write_text(json.dumps(cats))
        lines = [
            json.dumps(
                {
                    "epoch": e,
                    "loss": 2.0 / (e + 1),
                    "recon_loss": 1.5 / (e + 1),
                    "commit_loss": 0.1 / (e + 1),
                    "val_r2": 1 - 1 / (e + 2),
                    **{f"usage_l{lv}": min(1.0, 0.2 * (e + 1) / (lv + 1)) for lv in range(3)},
                    **{f"perplexity_l{lv}": 1.0 + e * (lv + 1) for lv in range(3)},
                }
            )
            for e in range(5)
        ]
        lines.insert(2, json.dumps({"epoch": 1.5, "note": "unknown keys are ignored", "lr": 1e-3}))
        (tok / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return SyntheticRun(out, n, m, steps, stride, channels, grid, ks, div)


def _summary(u: np.ndarray) -> list[float]:
    with np.errstate(invalid="ignore"):
        std_t = np.nanstd(u, axis=(0, 2, 3, 4))
        spread = np.nanmean(np.nanstd(u, axis=0))
        speed = np.nanmean(np.abs(np.diff(u, axis=1)))
        peak = float(np.argmax(np.abs(np.fft.rfft(np.nan_to_num(u[0, 0, 0, 0])))[1:]) + 1)
    return [np.nanmean(std_t), np.nanmax(std_t), peak, spread, speed, np.nanmean(u)]


def fake_replay(run: SyntheticRun, seed: int = 0):  # noqa: ANN201 (a replay_operator stand-in)
    """A ``replay_operator(out_dir, index)`` stand-in returning the closed-form rollout."""

    def replay_operator(out_dir: str | Path, index: int) -> SimpleNamespace:
        return SimpleNamespace(trajectory=rollout(
            index,
            seed,
            run.m,
            run.steps,
            run.channels,
            run.grid,
            run.steps // 2 if run.diverged[index] else None,
        ))

    return replay_operator

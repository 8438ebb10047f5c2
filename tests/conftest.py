"""Shared fixtures: tiny configs that run in seconds on 2 CPU cores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from spinlock.config import config_from_dict, load_config

ROOT = Path(__file__).resolve().parents[1]

# One intra-op thread: results do not depend on it (tested), and with Ray workers and test processes
# sharing 2 cores, OpenMP spin-waiting of 2-thread pools slowed some kernels by >10x (measured).
torch.set_num_threads(1)

# One Ray authentication mode for every Ray this test process starts. Ray keeps the mode of the first
# ray.init() of a process: an embedded Ray that took token mode from ~/.ray/auth_token, followed in the
# same process by one started with RAY_AUTH_MODE=disabled, has the driver refuse the GCS's calls
# ("Missing authorization header"), so the new GCS takes the driver for dead and destroys every actor it
# creates (reproduced with two ray.init() calls in one script). Tests of token behaviour run their
# commands in subprocesses with an environment of their own.
os.environ["RAY_AUTH_MODE"] = "disabled"


def tiny_config(**overrides):
    """Quickstart shrunk to seconds; overrides are dotted KEY=VALUE strings."""
    base = [
        "simulation.num_operators=12",
        "simulation.grid=16",
        "simulation.steps=8",
        "simulation.batch_operators=4",
        "sharding.operators_per_shard=4",
        "storage.trajectories.stride=2",
        "storage.trajectories.dtype=float32",
        "initial_conditions.mix=[{type: gaussian_random_field}]",
    ]
    extra = [f"{k}={v}" for k, v in overrides.items()]
    return load_config(ROOT / "configs" / "quickstart.yaml", base + extra)


@pytest.fixture
def tiny_cfg():
    return tiny_config()


__all__ = ["ROOT", "config_from_dict", "tiny_config"]


def _reset_spinlock_logger() -> None:
    import logging

    log = logging.getLogger("spinlock")
    log.handlers[:] = [h for h in log.handlers if not getattr(h, "_spinlock", False)]
    log.propagate = True
    log.setLevel(logging.NOTSET)


@pytest.fixture(autouse=True)
def _spinlock_logger_as_library():
    """The CLI configures the ``spinlock`` logger for a terminal (own handler, no propagation). Tests and
    module fixtures that run the CLI in-process must not take later tests' records away from ``caplog``,
    so every test starts and ends with the library's default logger."""
    _reset_spinlock_logger()
    yield
    _reset_spinlock_logger()

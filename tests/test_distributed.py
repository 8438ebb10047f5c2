"""Ray generation driver: worker-count invariance, actor loss, driver interrupt, corrupt shards, failures.

One local Ray (2 CPUs) serves the module; every run uses the tiny config (3 shards of 4 operators).
The reference dataset comes from a 1-actor run; every other scenario must reproduce it array for array.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import ray
from conftest import ROOT, tiny_config
from faults import ORDERS_ENV, kill_order_runtime_env, order_kill

from spinlock.config import dump_config
from spinlock.config.loading import ConfigError
from spinlock.errors import SpinlockError
from spinlock.storage.layout import shard_path

pytestmark = pytest.mark.ray

QUIET = {"distributed.cpu_headroom": 0}


@pytest.fixture(scope="module")
def orders(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("orders")


@pytest.fixture(scope="module")
def local_ray(orders):
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", ORDERS_ENV)}
    os.environ["RAY_AUTH_MODE"] = "disabled"  # no dependence on a shared ~/.ray/auth_token
    ray.init(num_cpus=2, include_dashboard=False, runtime_env=kill_order_runtime_env(orders))
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def datasets(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def assert_same(a: Path, b: Path) -> None:
    da, db = datasets(a), datasets(b)
    assert sorted(da) == sorted(db)
    for name in da:
        np.testing.assert_array_equal(da[name], db[name], err_msg=name)


@pytest.fixture(scope="module")
def reference(local_ray, tmp_path_factory):
    from spinlock.distributed.driver import generate

    out = tmp_path_factory.mktemp("ref")
    path = generate(tiny_config(**QUIET), out, workers=1, show_progress=False)
    return path


def test_reference_is_complete(reference):
    d = datasets(reference)
    n = tiny_config().simulation.num_operators
    assert d["operators/index"].tolist() == list(range(n))
    for name in ("parameters/unit", "ics/fields", "status", "features/summary", "features/temporal"):
        assert len(d[name]) == n, name  # the merged row count is num_operators for every dataset
    assert d["trajectories"].shape[:3] == (12, 2, 5)  # N, M, steps/stride + 1
    for m in range(2):  # stored step 0 of every realization is the initial condition
        np.testing.assert_array_equal(d["trajectories"][:, m, 0], d["ics/fields"])


def test_two_workers_identical_to_one(reference, tmp_path):
    from spinlock.distributed.driver import GenerationRun

    run = GenerationRun(tiny_config(**QUIET), tmp_path, workers=2, show_progress=False)
    path = run.execute()
    assert run.scheduler.shape.actors == 2
    assert sorted(s.shard_id for s in run.report.completed) == [0, 1, 2]
    assert_same(reference, path)


def test_killed_actor_shard_is_retried(reference, orders, tmp_path):
    """An actor process dies mid-shard (injected, not timed): the shard is retried on a new actor."""
    from spinlock.distributed.driver import GenerationRun

    taken = order_kill(orders, "shard-00001.h5")
    run = GenerationRun(tiny_config(**QUIET), tmp_path, workers=2, show_progress=False)
    path = run.execute()
    assert taken.exists(), "no attempt obeyed the kill order"
    assert run.report.retries == 1 and run.report.replaced_actors == 1 and not run.report.failed
    assert sorted(s.shard_id for s in run.report.completed) == [0, 1, 2]  # each exactly once
    assert not list((tmp_path / "shards").glob("*.tmp"))
    assert_same(reference, path)


def test_interrupted_driver_resumes(local_ray, tmp_path):
    """Ctrl-C on `spinlock generate` with its own embedded Ray, then the same command again."""
    from spinlock.distributed.driver import GenerationRun, generate

    # 16 shards of ~0.2 s each, so that the run is still going when the first shard lands and SIGINT is sent
    cfg = tiny_config(**QUIET, **{"simulation.num_operators": 64, "simulation.grid": 32, "simulation.steps": 24})
    reference = generate(cfg, tmp_path / "ref", workers=1, show_progress=False)
    cfg_file = tmp_path / "tiny.yaml"
    cfg_file.write_text(dump_config(cfg))
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(ROOT)}
    # as from a terminal: a suite started in the background of a non-interactive shell inherits SIGINT
    # ignored (bash does that to '&' jobs), and Python then installs no KeyboardInterrupt handler
    proc = subprocess.Popen(
        [sys.executable, "-m", "spinlock.cli.main", "generate", str(cfg_file), "--out", str(out),
         "--workers", "1"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    first = shard_path(out, 0)
    deadline = time.time() + 180
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert first.exists(), "first shard never appeared"
    proc.send_signal(signal.SIGINT)
    log = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 130, log
    # Ray's own start-up lines stay in its log files (spinlock.logs): Spinlock's lines say what happened
    assert "generate: 16 of 16 shard(s) to run" in log and "interrupted; rerun the same command to resume" in log
    assert not (out / "dataset.h5").exists()
    stamp = first.stat().st_mtime_ns

    run = GenerationRun(cfg, out, workers=2, show_progress=False)
    path = run.execute()
    assert 0 not in {s.shard_id for s in run.report.completed}  # kept, not regenerated
    assert first.stat().st_mtime_ns == stamp
    assert_same(reference, path)


def test_corrupt_and_partial_shards_are_regenerated(reference, tmp_path):
    import shutil

    from spinlock.distributed.driver import GenerationRun

    out = tmp_path / "out"
    shutil.copytree(reference.parent, out)
    bad = shard_path(out, 1)
    bad.write_bytes(bad.read_bytes()[:4096])  # truncated: not an HDF5 file any more
    two = shard_path(out, 2)
    two.rename(two.with_name(two.name + ".tmp"))  # what a crash mid-write leaves
    (out / "dataset.h5").unlink()
    run = GenerationRun(tiny_config(**QUIET), out, workers=2, show_progress=False)
    path = run.execute()
    assert sorted(s.shard_id for s in run.report.completed) == [1, 2]
    assert not list((out / "shards").glob("*.tmp"))
    assert_same(reference, path)


def test_failing_shard_bounded_retries_nonzero_exit(local_ray, tmp_path, capsys):
    """A shard whose every attempt raises (its feature table path is a directory) fails alone."""
    from spinlock.cli.main import main
    from spinlock.storage.layout import parquet_path

    cfg = tiny_config(**QUIET, **{"distributed.max_retries": 1})
    cfg_file = tmp_path / "tiny.yaml"
    cfg_file.write_text(dump_config(cfg))
    out = tmp_path / "out"
    parquet_path(out, 1).mkdir(parents=True)
    code = main(["generate", str(cfg_file), "--out", str(out), "--workers", "2"])
    err = capsys.readouterr().err
    assert code == 2
    line = [x for x in err.splitlines() if x.startswith("spinlock generate: error:")]
    assert len(line) == 1 and "1 shard(s) failed after 2 attempt(s)" in line[0]
    assert "shard-00001.h5: IsADirectoryError" in line[0] and "shard-00000" not in line[0]
    assert err.count("attempt 1 failed") == 1  # one retry, then given up
    for k in (0, 2):
        assert shard_path(out, k).exists() and parquet_path(out, k).is_file()
    assert not (out / "dataset.h5").exists()


def test_unrunnable_settings_fail_before_any_actor(local_ray, tmp_path):
    from spinlock.distributed.driver import GenerationRun

    with pytest.raises(SpinlockError, match="gpus_per_actor is 1 but this machine's Ray has no GPU"):
        cfg = tiny_config(**{"distributed.gpus_per_actor": 1})
        GenerationRun(cfg, tmp_path / "a", embedded=True).execute()
    with pytest.raises(SpinlockError, match="precision: 'bf16' needs CUDA"):
        GenerationRun(tiny_config(**{"simulation.precision": "bf16"}), tmp_path / "b").execute()
    with pytest.raises(SpinlockError, match="device is 'cuda' but the actor pool has no GPUs"):
        GenerationRun(tiny_config(**{"simulation.device": "cuda"}), tmp_path / "c").execute()


def test_actor_that_cannot_start_stops_the_run(local_ray, tmp_path):
    """bf16 on a node without CUDA fails in the actor's __init__: one clear error, no retry loop."""
    from spinlock.distributed.cluster import PoolShape
    from spinlock.distributed.scheduler import ShardScheduler
    from spinlock.generate import plan_shards

    cfg = tiny_config(**{"simulation.precision": "bf16"})
    sched = ShardScheduler(cfg, str(tmp_path), PoolShape(1, 0.0, 1.0), "t", show_progress=False)
    with pytest.raises(SpinlockError, match=r"actor could not start: .*precision: 'bf16' needs CUDA"):
        sched.run(plan_shards(cfg))


def test_pool_shape_from_config_and_capacity(monkeypatch):
    from spinlock.config.distributed import DistributedConfig
    from spinlock.distributed import cluster

    caps = {"CPU": 8.0, "GPU": 0.0}
    monkeypatch.setattr(cluster, "cluster_capacity", lambda r: caps[r])
    d = DistributedConfig()
    assert cluster.pool_shape(d, 100) == cluster.PoolShape(7, 0.0, 1.0)  # 8 CPUs - 1 headroom
    assert cluster.pool_shape(d, 3).actors == 3  # never more actors than shards
    assert cluster.pool_shape(d, 100, workers=2).actors == 2
    assert cluster.pool_shape(DistributedConfig(cpus_per_actor=2), 100).actors == 3
    assert cluster.pool_shape(DistributedConfig(max_actors=4), 100).actors == 4
    caps["CPU"] = 1.0
    assert cluster.pool_shape(d, 100).actors == 1  # headroom never leaves no actor
    caps.update(GPU=4.0)
    assert cluster.pool_shape(d, 100) == cluster.PoolShape(4, 1.0, 1.0)  # auto → 1 GPU each
    assert cluster.pool_shape(DistributedConfig(gpus_per_actor=0.5), 100).actors == 8
    assert cluster.pool_shape(DistributedConfig(gpus_per_actor=0), 100).num_gpus == 0
    caps.update(GPU=0.0, CPU=0.0)  # autoscaling cluster, nothing connected, capacity unknown
    g = DistributedConfig(gpus_per_actor=1, max_actors=3)
    assert cluster.pool_shape(g, 100) == cluster.PoolShape(3, 1.0, 1.0)
    assert cluster.pool_shape(DistributedConfig(gpus_per_actor=1), 100).actors == 1
    with pytest.raises(SpinlockError, match="--workers must be >= 1"):
        cluster.pool_shape(d, 10, workers=0)


def test_unbounded_autoscaler_never_means_one_actor_per_shard(monkeypatch):
    """Ray reports a node group without max_workers as sys.maxsize: that is no actor count."""
    import ray._private.state

    from spinlock.config.distributed import DistributedConfig
    from spinlock.distributed import cluster

    limits = {"GPU": sys.maxsize, "CPU": sys.maxsize}
    connected = {"CPU": 2.0, "GPU": 1.0}
    monkeypatch.setattr(ray._private.state.state, "get_max_resources_from_cluster_config", lambda: limits)
    monkeypatch.setattr(cluster.ray, "cluster_resources", lambda: connected)
    assert cluster.cluster_capacity("GPU") == float("inf")
    assert cluster.pool_shape(DistributedConfig(gpus_per_actor=1), 10_000) == cluster.PoolShape(1, 1.0, 1.0)
    assert cluster.pool_shape(DistributedConfig(gpus_per_actor=1, max_actors=16), 10_000).actors == 16
    assert cluster.pool_shape(DistributedConfig(gpus_per_actor=0), 10_000).actors == 1  # 2 CPUs - 1 headroom
    limits.update(GPU=8)
    assert cluster.pool_shape(DistributedConfig(gpus_per_actor=1), 10_000).actors == 8  # bounded: as before


@pytest.mark.parametrize("key,value", [("gpus_per_actor", 2), ("gpus_per_actor", "gpu"),
                                       ("cpus_per_actor", 0), ("max_retries", -1), ("workers", 2)])
def test_distributed_config_is_strict(key, value):
    with pytest.raises(ConfigError, match=f"distributed.{key}"):
        tiny_config(**{f"distributed.{key}": value})

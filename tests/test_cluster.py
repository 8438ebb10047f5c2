"""Real local Ray heads: ``ray job submit`` of ``spinlock generate``, and autoscaling from zero workers.

Each head is a ``ray start --head --block`` subprocess in its own process group with its own temp dir
and free ports, stopped by signalling that group — never ``ray stop``, which would kill every Ray of
the user. Token auth is disabled explicitly so a stale ``~/.ray/auth_token`` cannot interfere.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from conftest import ROOT, tiny_config

from spinlock.config import dump_config

pytestmark = pytest.mark.cluster

RAY_CLI = [sys.executable, "-m", "ray.scripts.scripts"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="disabled", PYTHONPATH=str(ROOT), **extra)
    return env


class LocalHead:
    """``ray start --head --block`` on free ports; ``stop`` ends its process group only."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, port: int | None = None):
        # short path: Ray's unix sockets live under the temp dir (107-byte limit)
        self.tmp = Path(tempfile.mkdtemp(prefix="slc-", dir="/tmp"))
        self.port, self.dashboard, self.metrics = port or free_port(), free_port(), free_port()
        self.log = self.tmp / "head.log"
        cmd = [*RAY_CLI, "start", "--head", "--block", "--port", str(self.port),
               "--temp-dir", str(self.tmp / "r"), "--dashboard-host", "127.0.0.1",
               "--dashboard-port", str(self.dashboard), "--dashboard-agent-listen-port", str(free_port()),
               "--ray-client-server-port", str(free_port()), "--metrics-export-port", str(self.metrics),
               "--runtime-env-agent-port", str(free_port()), "--disable-usage-stats", *args]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, env=env or clean_env(), stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, cwd=self.tmp)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_started(self, timeout: float = 150) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if b"Ray runtime started" in self.log.read_bytes():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        raise RuntimeError(f"ray head did not start:\n{self.log.read_text()[-3000:]}")

    def wait_dashboard(self, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.dashboard}/api/version", timeout=5):
                    return
            except OSError:
                time.sleep(1)
        raise RuntimeError(f"dashboard did not answer:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        try:  # stragglers of the group (raylets of fake nodes, workers)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(self.tmp, ignore_errors=True)


def read_all(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The dataset from the plain in-process core (no Ray): every cluster run must equal it."""
    from spinlock.generate import plan_shards, prepare_output, run_shard
    from spinlock.storage.merge import merge_shards

    cfg = tiny_config()
    out = prepare_output(cfg, tmp_path_factory.mktemp("seq"))
    for spec in plan_shards(cfg):
        run_shard(cfg, spec, out)
    return read_all(merge_shards(cfg, out))


def assert_same(ref: dict[str, np.ndarray], path: Path) -> None:
    got = read_all(path)
    assert sorted(got) == sorted(ref)
    for name in ref:
        np.testing.assert_array_equal(got[name], ref[name], err_msg=name)


def write_config(tmp_path: Path, **overrides) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(dump_config(tiny_config(**overrides)))
    return path


def test_ray_job_submit(reference, tmp_path):
    head = LocalHead("--num-cpus", "2", "--include-dashboard", "true")
    try:
        head.wait_started()
        head.wait_dashboard()
        cfg = write_config(tmp_path, **{"distributed.cpu_headroom": 0})
        out = tmp_path / "out"
        job = subprocess.run(
            [*RAY_CLI, "job", "submit", "--address", f"http://127.0.0.1:{head.dashboard}",
             "--working-dir", str(ROOT), "--",
             "python", "-m", "spinlock.cli.main", "generate", str(cfg), "--out", str(out), "--workers", "2"],
            env=clean_env(), capture_output=True, text=True, timeout=400,
        )
        log = job.stdout + job.stderr
        assert job.returncode == 0, log[-4000:]
        assert "succeeded" in log and f"dataset: {out / 'dataset.h5'}" in log
        assert "on 2 actor(s) × 1 CPU" in log
        assert_same(reference, out / "dataset.h5")
        # custom metrics reach the head's Prometheus endpoint (exported with Ray's ``ray_`` prefix)
        text, deadline = "", time.time() + 60
        while "ray_spinlock_operators_done" not in text and time.time() < deadline:
            time.sleep(2)
            with urllib.request.urlopen(f"http://127.0.0.1:{head.metrics}/metrics", timeout=10) as r:
                text = r.read().decode()
        done = [line for line in text.splitlines()
                if line.startswith("ray_spinlock_operators_done") and 'run="quickstart-' in line]
        assert done and sum(float(line.rsplit(" ", 1)[1]) for line in done) == 12, text[-2000:]
    finally:
        head.stop()


def test_fake_autoscaling_gpu_actors_from_zero(reference, tmp_path):
    from spinlock.config.loading import config_hash

    fake = yaml.safe_load((ROOT / "cluster" / "fake-autoscaling.yaml").read_text())
    head_port = free_port()
    fake["provider"]["gcs_address"] = f"127.0.0.1:{head_port}"
    cfg_file = tmp_path / "fake.yaml"
    cfg_file.write_text(yaml.safe_dump(fake))
    head = LocalHead("--num-cpus", "0", "--num-gpus", "0", "--include-dashboard", "false",
                     "--autoscaling-config", str(cfg_file), env=clean_env(RAY_FAKE_CLUSTER="1"),
                     port=head_port)
    try:
        head.wait_started()
        out = tmp_path / "out"
        cfg = write_config(tmp_path, **{"distributed.gpus_per_actor": 1, "distributed.max_actors": 2})
        run = subprocess.run(
            [sys.executable, "-m", "spinlock.cli.main", "generate", str(cfg), "--out", str(out),
             "--address", head.address],
            env=clean_env(), capture_output=True, text=True, timeout=300, cwd=ROOT,
        )
        log = run.stdout + run.stderr
        assert run.returncode == 0, log[-4000:]
        assert "on 2 actor(s) × 1 GPU + 1 CPU" in log
        # the autoscaler's events are streamed to the driver; which of them arrive before the run ends
        # depends on its 5 s update period ("Adding 2 node(s) of type gpu_worker" comes ~5 s after the
        # launch, and a run that gives shards only to started actors can end before that). That it added
        # the GPU nodes shows in the run itself: the head has no GPU.
        assert "(autoscaler +" in log
        assert_same(reference, out / "dataset.h5")
        with h5py.File(out / "dataset.h5") as f:
            assert f.attrs["config_hash"] == config_hash(tiny_config())
    finally:
        head.stop()

"""A worker node lost mid-stage on a real multi-node Ray: the stage completes, and the dataset is identical.

The cluster (tests/netns_cluster.py) is a head without CPUs and three 2-CPU worker nodes, each a separate
host in its own network namespace, sharing this machine's filesystem as cluster nodes share NFS. A node
is lost by cutting its link (a partition): Ray declares it dead after its health checks fail, while its
processes keep running, cut off from the cluster but not from the disk.

* **Generation**: 3 shards on 3 actors of 2 CPUs, one per worker node, so that no CPU is left for a
  replacement actor. Every actor parks before its commit (park orders, tests/faults.py) and reports its
  node; the node of shard 1's writer is cut, and the others commit once the driver has seen that actor
  die. The run must retry the shard on a surviving actor (not on the replacement actor, which cannot
  start) and merge a dataset identical to the in-process one. Then the cut-off writer, still running,
  is released: its commit must fail (the driver removed its temporary file) and change nothing.
* **Tokenize**: the Ray Train worker parks before its checkpoint after epoch 2 (of 3); once Ray Train's
  controller holds the epoch-1 checkpoint, the worker's node is cut. Ray Train must restart the worker
  group on the surviving node from that checkpoint, and the stage must write tokens for every operator.
  (The surviving node's second CPU runs the Ray Data tasks that feed the trainer and recompute from
  lineage any block lost with the node.) That a resumed fit's tokens equal an uninterrupted fit's is
  checked by test_remote_run.py (the same restore path, after a killed driver); here it would cost a
  second fit.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from conftest import ROOT, tiny_config
from faults import order_park
from netns_cluster import NetnsCluster, can_unshare
from test_distributed import datasets

from spinlock.config import dump_config
from spinlock.generate import plan_shards, prepare_output, run_shard
from spinlock.storage.durable import temp_files
from spinlock.storage.layout import parquet_path, shard_path
from spinlock.storage.merge import merge_shards

pytestmark = [pytest.mark.cluster,
              pytest.mark.skipif(not can_unshare(), reason="needs user, network, PID and mount namespaces")]

WORKERS = 3
SYSTEM_CONFIG = {
    # a node the GCS cannot reach is declared dead after 3 failed health checks: <= 3 x (2 s + 1 s)
    "health_check_initial_delay_ms": 1000,
    "health_check_period_ms": 1000,
    "health_check_timeout_ms": 2000,
    "health_check_failure_threshold": 3,
    # a cut-off node's processes exit after this long without the GCS (default 60 s); the test's parked
    # writer must outlive the run to commit late
    "gcs_rpc_server_reconnect_timeout_s": 600,
}
SETTINGS = {
    "simulation.num_operators": 24,
    "sharding.operators_per_shard": 8,  # 3 shards: one per worker node
    "simulation.batch_operators": 4,
    "distributed.cpus_per_actor": 2,  # a whole worker node each
    "distributed.cpu_headroom": 0,
    # a fast tokenizer (as in test_remote_run.py), checkpointed after every epoch
    "tokenizer.validation_fraction": 0.2,
    "tokenizer.model.latent_dim": 4,
    "tokenizer.model.components_per_stream": 2,
    "tokenizer.model.hidden_dim": 16,
    "tokenizer.model.ic_resolution": 8,
    "tokenizer.model.codebook_sizes": "[4, 4, 4]",
    "tokenizer.training.epochs": 3,
    "tokenizer.training.batch_size": 8,
    "tokenizer.training.kmeans_init_rows": 16,
    "tokenizer.training.checkpoint_seconds": 0,
}
SHARD = "shard-00001.h5"
TIMEOUT = 300  # per stage; a stage that hangs (a shard given to an actor that can never start) fails here


@pytest.fixture(scope="module")
def cluster():
    c = NetnsCluster([2] * WORKERS, SYSTEM_CONFIG)
    yield c
    c.stop()


@pytest.fixture(scope="module")
def cfg_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(dump_config(tiny_config(**SETTINGS)))
    return path


@pytest.fixture(scope="module")
def reference(cfg_file, tmp_path_factory) -> Path:
    """The plain in-process run (no Ray): every shard by ``run_shard``, then the merge."""
    cfg = tiny_config(**SETTINGS)
    out = tmp_path_factory.mktemp("reference")
    prepare_output(cfg, out)
    for spec in plan_shards(cfg):
        run_shard(cfg, spec, out)
    merge_shards(cfg, out)
    return out


def assert_identical(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    """Same datasets, dtypes, shapes and bytes (NaN payloads and signed zeros included)."""
    assert sorted(a) == sorted(b)
    for name, x in a.items():
        y = b[name]
        assert (x.dtype, x.shape) == (y.dtype, y.shape), name
        assert x.tolist() == y.tolist() if x.dtype.kind == "O" else x.tobytes() == y.tobytes(), name


def drive(cluster: NetnsCluster, stage: str, cfg_file: Path, out: Path, orders: Path, nodes: int
          ) -> SimpleNamespace:
    """Start the driver of one stage on the head host."""
    report, log = out.with_name(out.name + f"-{stage}.json"), out.with_name(out.name + f"-{stage}.log")
    cmd = [sys.executable, str(ROOT / "tests" / "node_loss_driver.py"), stage, str(cfg_file), str(out),
           "--address", cluster.address, "--orders", str(orders), "--nodes", str(nodes), "--report", str(report)]
    return SimpleNamespace(proc=cluster.popen(cmd, log), report=report, log=log)


def wait_for(path: Path, driver: SimpleNamespace, timeout: float = TIMEOUT) -> None:
    """Wait for ``path`` while the driver runs (or, once it has finished, for ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    running = driver.proc.poll() is None
    while not path.exists():
        if (running and driver.proc.poll() is not None) or time.monotonic() > deadline:
            pytest.fail(f"no {path.name} (driver exit {driver.proc.poll()}):\n{driver.log.read_text()[-5000:]}")
        time.sleep(0.1)


def wait_for_log(driver: SimpleNamespace, text: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while text not in driver.log.read_text():
        if driver.proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"no {text!r} (driver exit {driver.proc.poll()}):\n{driver.log.read_text()[-5000:]}")
        time.sleep(0.1)


def finish(driver: SimpleNamespace) -> dict:
    try:
        rc = driver.proc.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        driver.proc.kill()
        pytest.fail(f"the driver did not finish in {TIMEOUT} s:\n{driver.log.read_text()[-5000:]}")
    assert rc == 0, driver.log.read_text()[-5000:]
    return json.loads(driver.report.read_text())


def lose_parked_node(cluster: NetnsCluster, parked: Path, lost: list[str]) -> str:
    """Cut the node the parked worker runs on (it must be a worker node not lost before)."""
    node = cluster.node_of(json.loads(parked.read_text())["node_ip"])
    assert node.startswith("w") and node not in lost, f"parked on {node}"
    cluster.cut(node)
    lost.append(node)
    return node


@pytest.fixture(scope="module")
def lost() -> list[str]:
    return []


@pytest.fixture(scope="module")
def generated(cluster, cfg_file, reference, lost, tmp_path_factory) -> SimpleNamespace:
    """The lossy generation. Every actor parks before its commit; the node of shard 1's writer is cut;
    once the driver has seen that actor die, the others commit: so the retry is queued while they are
    busy, and must wait for one of them rather than go to the replacement, which has no CPU to start on.
    After the run the cut-off writer is released."""
    base = tmp_path_factory.mktemp("gen")
    orders, out = base / "orders", base / "out"
    orders.mkdir()
    parked = [order_park(orders, shard_path(out, spec.shard_id).name) for spec in plan_shards(tiny_config(**SETTINGS))]
    driver = drive(cluster, "generate", cfg_file, out, orders, nodes=1 + WORKERS)
    for marker in parked:
        wait_for(marker, driver)
    node = lose_parked_node(cluster, orders / f"parked-{SHARD}", lost)
    t0 = time.monotonic()
    wait_for_log(driver, f"{SHARD} attempt 1 failed (actor died")
    detected = time.monotonic() - t0
    for marker in parked:
        if marker.name != f"parked-{SHARD}":
            (orders / marker.name.replace("parked-", "release-")).touch()
    report = finish(driver)
    after_loss = time.monotonic() - t0
    merged = datasets(out / "dataset.h5")
    retry = shard_path(out, 1).stat().st_ino
    (orders / f"release-{SHARD}").touch()  # the cut-off writer goes on to its commit
    wait_for(orders / f"done-{SHARD}", driver, 120)
    return SimpleNamespace(out=out, node=node, report=report, merged=merged, retry_inode=retry,
                           late=(orders / f"done-{SHARD}").read_text(), detected=detected, after_loss=after_loss,
                           log=driver.log)


def test_generation_survives_a_lost_worker_node(generated, reference):
    report = generated.report
    assert report["actors"] == WORKERS  # every worker CPU taken: the replacement actor can never start
    assert report["retries"] == 1 and report["replaced_actors"] == 1 and not report["failed"], report
    assert sorted(report["completed"]) == [0, 1, 2]
    assert len(generated.merged["operators/index"]) == 24  # the merged row count is num_operators
    assert_identical(generated.merged, datasets(reference / "dataset.h5"))
    for spec in plan_shards(tiny_config(**SETTINGS)):  # the feature tables too, byte for byte
        table = parquet_path(generated.out, spec.shard_id)
        assert table.read_bytes() == parquet_path(reference, spec.shard_id).read_bytes(), table.name


def test_a_late_commit_from_the_lost_node_changes_nothing(generated, reference):
    assert generated.late.startswith("FileNotFoundError"), generated.late  # its temporary file was removed
    final = shard_path(generated.out, 1)
    assert final.stat().st_ino == generated.retry_inode  # still the retry's shard
    assert temp_files(final) == [] and temp_files(parquet_path(generated.out, 1)) == []
    assert_identical(datasets(generated.out / "dataset.h5"), datasets(reference / "dataset.h5"))


def wait_until_registered(out: Path, driver: SimpleNamespace, epoch: int) -> None:
    """Wait until Ray Train's controller holds the checkpoint after record ``epoch``: a checkpoint counts
    only once the controller has taken its report (it polls the workers), which it records in its
    snapshot; one uploaded by a worker lost before that poll is not resumed from."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        for snapshot in (out / "tokenizer" / "ray").glob("*/checkpoint_manager_snapshot.json"):
            try:
                results = json.loads(snapshot.read_text())["checkpoint_results"]
            except ValueError:  # being written
                continue
            if any(r["metrics"]["epoch"] == epoch for r in results):
                return
        if driver.proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"no checkpoint of epoch {epoch} registered:\n{driver.log.read_text()[-5000:]}")
        time.sleep(0.1)


def test_tokenize_survives_a_lost_worker_node(cluster, cfg_file, generated, lost, tmp_path):
    orders = tmp_path / "orders"
    orders.mkdir()
    parked = order_park(orders, "epoch-2")
    driver = drive(cluster, "tokenize", cfg_file, generated.out, orders, nodes=1 + WORKERS - len(lost))
    wait_for(parked, driver)
    wait_until_registered(generated.out, driver, epoch=0)
    lose_parked_node(cluster, parked, lost)
    report = finish(driver)
    assert report["epochs"] == 3
    history = [json.loads(line) for line in (generated.out / "tokenizer" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [0, 1, 2]
    assert [r["attempt_start_epoch"] for r in history] == [0, 1, 1]  # restarted from the epoch-1 checkpoint
    layout = json.loads((generated.out / "tokenizer" / "summary.json").read_text())["layout"]
    with h5py.File(generated.out / "dataset.h5", "r") as f:
        tokens, index = f["tokens"][()], f["operators/index"][()]
    assert tokens.shape == (24, len(layout["positions"])) and index.tolist() == list(range(24))
    sizes = np.array([p["codebook_size"] for p in layout["positions"]])
    assert ((tokens >= 0) & (tokens < sizes)).all()

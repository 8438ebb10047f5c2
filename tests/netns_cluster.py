"""A multi-node Ray on one machine: a head and worker nodes as separate hosts, each in its own network namespace.

Layout: a *hub* (``unshare --user --map-root-user --net --pid --mount``, so no root is needed) holds a
bridge; every node is a ``ray start --block`` in a network namespace of its own inside the hub, with
one veth pair to the bridge, its own address (``10.203.0.N``), a default route, and its own ports and
temp dir. :meth:`NetnsCluster.cut` loses a node the way a real cluster does: its link goes down (a
partition), the GCS stops hearing the raylet's health checks and declares the node dead, and its
processes keep running, cut off from the cluster but not from the shared filesystem.

Everything runs in the hub's PID namespace: stopping the hub kills every process of the cluster, and
nothing outside it is touched (no ``ray stop``). A driver must run in a node's network namespace (Ray
needs a raylet at the driver's address): :meth:`NetnsCluster.popen` starts one on the head, in ``/``
(entering the hub's mount namespace resets the working directory): pass absolute paths.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conftest import ROOT

SUBNET = "10.203.0"
RAY = str(Path(sys.executable).parent / "ray")


def can_unshare() -> bool:
    """Whether user, network, PID and mount namespaces can be created here (root or unprivileged)."""
    if not shutil.which("unshare") or not shutil.which("nsenter") or not shutil.which("ip"):
        return False
    probe = ["unshare", "--user", "--map-root-user", "--net", "--pid", "--mount", "--fork", "ip", "link",
             "add", "b0", "type", "bridge"]
    return subprocess.run(probe, capture_output=True).returncode == 0


class NetnsCluster:
    """A head (no CPUs: work goes to the workers) and ``len(workers)`` worker nodes; ``workers[i]`` is the
    worker's CPU count. ``system_config`` is Ray's ``_system_config`` (the head hands it to every node)."""

    def __init__(self, workers: list[int], system_config: dict):
        # short path: Ray's unix sockets live under each node's temp dir (107-byte limit)
        self.folder = Path(tempfile.mkdtemp(prefix="nsc-", dir="/tmp"))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        self.env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=str(ROOT))
        self.hub = subprocess.Popen(
            ["unshare", "--user", "--map-root-user", "--net", "--pid", "--mount", "--fork", "--kill-child",
             "--mount-proc", "sleep", "infinity"], start_new_session=True)
        self.enter = ["nsenter", "--target", str(self._ns_init()), "--user", "--net", "--pid", "--mount", "--"]
        self.ips: dict[str, str] = {}
        self.nodes: dict[str, subprocess.Popen] = {}
        try:
            self._hub(["ip", "link", "set", "lo", "up"])
            self._hub(["ip", "link", "add", "br0", "type", "bridge"])
            self._hub(["ip", "link", "set", "br0", "up"])
            self.head = f"{SUBNET}.2"
            self.address = f"{self.head}:6379"
            head_args = ["--head", "--port", "6379", "--num-cpus", "0", "--include-dashboard", "false",
                         "--system-config", json.dumps(system_config)]
            self._start("head", self.head, head_args)
            for i, cpus in enumerate(workers):
                self._start(f"w{i + 1}", f"{SUBNET}.{3 + i}", ["--address", self.address, "--num-cpus", str(cpus)])
        except BaseException:
            self.stop()
            raise

    def _ns_init(self) -> int:
        """Host PID of the hub's init (the ``sleep`` that ``unshare --fork`` started)."""
        children = Path(f"/proc/{self.hub.pid}/task/{self.hub.pid}/children")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.hub.poll() is not None:
                raise RuntimeError(f"unshare exited with {self.hub.returncode}")
            pids = children.read_text().split()
            # ready once it runs sleep: the namespaces, the ID map and /proc are set up before the exec
            if pids and Path(f"/proc/{pids[0]}/comm").read_text().strip() == "sleep":
                return int(pids[0])
            time.sleep(0.02)
        raise RuntimeError("the hub namespace did not start")

    def _hub(self, cmd: list[str]) -> None:
        done = subprocess.run([*self.enter, *cmd], capture_output=True, text=True, timeout=60)
        if done.returncode:
            raise RuntimeError(f"{' '.join(cmd)} in the hub: exit {done.returncode}: {done.stderr.strip()}")

    def _start(self, name: str, ip: str, ray_args: list[str]) -> None:
        """``ray start --block`` in a new network namespace, wired to the bridge as ``ip``."""
        pid_file = self.folder / f"{name}.pid"
        script = f"""set -e
echo $$ > {pid_file}
while ! ip link show eth0 >/dev/null 2>&1; do sleep 0.05; done
ip link set lo up
ip addr add {ip}/24 dev eth0
ip link set eth0 up
ip route add default dev eth0
exec {RAY} start --block --node-ip-address {ip} --num-gpus 0 --object-store-memory 100000000 \\
    --temp-dir {self.folder / name} --disable-usage-stats "$@"
"""
        cmd = [*self.enter, "unshare", "--net", "bash", "-c", script, name, *ray_args]
        with open(self.folder / f"{name}.log", "wb") as log:
            self.nodes[name] = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text().strip():
            if self.nodes[name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"node {name} did not start:\n{self.log(name)}")
            time.sleep(0.02)
        pid = pid_file.read_text().strip()  # the node's shell, as the hub's PID namespace numbers it
        self._hub(["ip", "link", "add", f"v-{name}", "type", "veth", "peer", "name", "eth0", "netns", pid])
        self._hub(["ip", "link", "set", f"v-{name}", "master", "br0", "up"])
        self.ips[name] = ip
        # one node at a time: a raylet gives its agents ~30 s to start, which several nodes starting
        # at once on a loaded 2-core machine miss (the raylet then aborts)
        deadline = time.monotonic() + 180
        while "Ray runtime started" not in self.log(name):
            if self.nodes[name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"node {name} did not start:\n{self.log(name)[-3000:]}")
            time.sleep(0.1)

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def node_of(self, ip: str) -> str:
        return next(name for name, addr in self.ips.items() if addr == ip)

    def cut(self, name: str) -> None:
        """Take the node's link down: a network partition; its processes keep running."""
        self._hub(["ip", "link", "set", f"v-{name}", "down"])

    def popen(self, cmd: list[str], log: Path) -> subprocess.Popen:
        """Start ``cmd`` on the head host (its network namespace), output to ``log``."""
        pid = (self.folder / "head.pid").read_text().strip()
        with open(log, "wb") as out:
            return subprocess.Popen([*self.enter, "nsenter", "--target", pid, "--net", "--", *cmd], env=self.env,
                                    stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        """Kill the hub: its PID namespace, and with it every node and driver, goes away."""
        if self.hub.poll() is None:
            os.killpg(self.hub.pid, signal.SIGKILL)
            self.hub.wait(30)
        for proc in self.nodes.values():
            proc.wait(30)
        shutil.rmtree(self.folder, ignore_errors=True)

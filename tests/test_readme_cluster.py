"""README's cluster block, run verbatim with bash where the quickstart ran first (so a token exists).

Ray 2.60 writes ``~/.ray/auth_token`` on the first embedded ``ray.init()``; a later ``ray start --head``
then enables token auth, and a client that does not send the token is refused. The block must work in
that state, as written. It binds Ray's default ports and ends with ``ray stop``, which stops every Ray
of the user, so it runs in its own network, PID and mount namespaces: its ``/tmp`` and ``HOME`` are a
test folder, its ports are its own, and the namespace's processes (the head included) all die with it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import h5py
import pytest
from conftest import ROOT
from test_readme_blocks import readme_cluster_block

pytestmark = pytest.mark.cluster

# inside the namespaces: private loopback, the test folder as /tmp, a HOME holding the quickstart's token
PRELUDE = """set -e
mount --bind "$NS_TMP" /tmp
ip link set lo up
export HOME=/tmp/home
mkdir -p "$HOME"
cd "$NS_REPO"
# what the quickstart's embedded ray.init() does on a fresh machine
python -c 'from ray._private.authentication.authentication_token_setup import generate_and_save_token as g; g()'
test -s "$HOME/.ray/auth_token"
exec bash -e /tmp/block.sh
"""


def can_unshare() -> bool:
    if ROOT.is_relative_to("/tmp"):  # the block's /tmp is a test folder mounted over it: ROOT would vanish
        return False
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return False
    probe = subprocess.run(["unshare", "--net", "--pid", "--fork", "--mount", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not can_unshare(), reason="needs root, unshare and a checkout outside /tmp")
def test_readme_cluster_block_runs_verbatim_with_a_token(tmp_path):
    block = readme_cluster_block()
    assert "ray start --head" in block and "ray job submit" in block and "ray stop" in block
    (tmp_path / "block.sh").write_text(block)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}  # a plain shell: no RAY_AUTH_MODE
    env.update(NS_TMP=str(tmp_path), NS_REPO=str(ROOT), PYTHONPATH=str(ROOT),
               PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""))
    try:
        # --kill-child: if the test times out, the namespace's init and with it every process inside die
        run = subprocess.run(["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc", "--mount",
                              "bash", "-c", PRELUDE], env=env, capture_output=True, text=True, timeout=540)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"README's cluster block did not finish:\n{str(e.stdout)[-3000:]}\n{str(e.stderr)[-3000:]}")
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-5000:]
    assert "Missing authentication token" not in log
    assert re.search(r"Job 'raysubmit_\w+' succeeded", log), log[-3000:]
    # ray stop ran (on a busy machine it may escalate to SIGKILL after its grace period: still stopped)
    assert re.search(r"Stopped (all|only) \d+", log), log[-3000:]
    with h5py.File(tmp_path / "spinlock-q" / "dataset.h5", "r") as f:
        assert f["status"].shape[0] == 256  # configs/quickstart.yaml: num_operators 256

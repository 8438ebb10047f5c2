"""What a person sees: ``--help``, ``--version``, and a quickstart-like run's terminal output (no Ray chatter)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
import ray
import torch
from conftest import ROOT, tiny_config

from spinlock import __version__, logs
from spinlock.cli.main import build_parser, main
from spinlock.config import dump_config

# Ray's lines a normal run used to print (issue 16 §4); they belong in Ray's log files
RAY_NOISE = ["core_worker.cc", "execution finished", "Progress bars disabled", "Token authentication is enabled",
             "Started a local Ray instance", "RayTrainWorker pid=", "TrainController"]


def cli(*args: str, home, timeout: float = 1200) -> subprocess.CompletedProcess:
    """The console script as a user runs it: its own process, a HOME without a Ray token yet."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "spinlock.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def test_version_names_spinlock_torch_and_ray(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"spinlock {__version__} (")
    assert f"torch {torch.__version__}" in out and f"ray {ray.__version__}" in out


def test_help_is_for_users():
    text = build_parser().format_help()
    assert "argument parsing" not in text  # the module docstring is for developers
    assert "neural-operator behaviour" in text and "examples:" in text
    assert "spinlock run configs/quickstart.yaml --out runs/quickstart" in text
    assert "-q, --quiet" in text and "-v, --verbose" in text


def test_verbosity_sets_spinlock_level_before_or_after_the_command(monkeypatch, capsys):
    monkeypatch.setenv("RAY_DATA_LOGGING_CONFIG", str(logs.RAY_DATA_LOGGING))  # undone after the test
    try:
        assert main(["-q", "validate", str(ROOT / "configs" / "quickstart.yaml")]) == 0
        assert logging.getLogger("spinlock").level == logging.WARNING
        assert main(["validate", "-v", str(ROOT / "configs" / "quickstart.yaml")]) == 0
        assert logging.getLogger("spinlock").level == logging.DEBUG
        assert main(["validate", str(ROOT / "configs" / "quickstart.yaml")]) == 0
        assert logging.getLogger("spinlock").level == logging.INFO
        assert sum(getattr(h, "_spinlock", False) for h in logging.getLogger("spinlock").handlers) == 1
    finally:
        logs._verbosity = None  # library default for the other tests of this process
    with pytest.raises(SystemExit):
        main(["-q", "-v", "validate", str(ROOT / "configs" / "quickstart.yaml")])
    assert "not allowed with argument" in capsys.readouterr().err


def test_native_ray_lines_are_recognised():
    line = (b"[2026-12-06 04:13:06,393 E 8955 8955] core_worker.cc:2465: Actor with class name: 'MapWorker' has"
            b" constructor arguments in the object store and max_restarts > 0.")
    assert logs.NATIVE_RAY_LINE.match(line)
    assert not logs.NATIVE_RAY_LINE.match(b"generate:  50%|#####     | 32/64 [00:03<00:03]")
    assert not logs.NATIVE_RAY_LINE.match(b"[notice] a new release of pip is available")


@pytest.mark.ray
def test_quickstart_like_run_prints_spinlock_lines_only(tmp_path):
    cfg = tiny_config(**{
        "simulation.num_operators": 64,
        "tokenizer.validation_fraction": 0.2,
        "tokenizer.categories.min_categories": 2,
        "tokenizer.model.latent_dim": 8,
        "tokenizer.model.components_per_stream": 4,
        "tokenizer.model.hidden_dim": 32,
        "tokenizer.model.ic_resolution": 8,
        "tokenizer.model.codebook_sizes": "[8, 16, 16]",
        "tokenizer.training.epochs": 2,
        "tokenizer.training.batch_size": 32,
    })
    path = tmp_path / "tiny.yaml"
    path.write_text(dump_config(cfg))
    home, out = tmp_path / "home", tmp_path / "out"
    home.mkdir()
    run = cli("run", str(path), "--out", str(out), home=home)
    text = run.stdout + run.stderr
    assert run.returncode == 0, text[-4000:]
    for noise in RAY_NOISE:
        assert noise not in text, f"{noise!r} reached the terminal:\n{text[-4000:]}"
    for own in ["generate: 16 of 16 shard(s) to run", "generate: 64 operator(s) in", "cleaning: ", "categories: ",
                "training: ", "epoch 1/2: loss", "epoch 2/2: loss", "tokens: [64, ", f"dataset:   {out}/dataset.h5",
                "Ray created an authentication token in", "RAY_AUTH_MODE=token"]:
        assert own in text, f"{own!r} missing:\n{text[-4000:]}"
    assert "generate:  50%" in run.stderr  # the stage's progress bar
    assert (home / ".ray" / "auth_token").exists()

    # -q: resuming the finished generation prints its result only (no INFO lines, no bar, no Ray lines)
    quiet = cli("-q", "generate", str(path), "--out", str(out), home=home)
    assert quiet.returncode == 0, (quiet.stdout + quiet.stderr)[-4000:]
    assert quiet.stdout == f"dataset: {out}/dataset.h5\n"
    assert quiet.stderr == "", quiet.stderr[-4000:]

"""Strict config: unknown keys, ranges, overrides, cross-checks, round trip."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, tiny_config

from spinlock.config import ConfigError, config_from_dict, config_hash, dump_config, load_config

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate_and_round_trip(path):
    cfg = load_config(path)
    again = config_from_dict(yaml.safe_load(dump_config(cfg)))
    assert again == cfg and config_hash(again) == config_hash(cfg)


def test_unknown_key_names_path_and_allowed_keys():
    with pytest.raises(ConfigError) as e:
        tiny_config(**{"simulation.gird": 32})
    msg = str(e.value)
    assert "simulation.gird: unknown key" in msg and "grid" in msg and "channels" in msg


def test_unknown_top_level_section():
    with pytest.raises(ConfigError, match="simulaton: unknown key"):
        config_from_dict({"simulaton": {}})


def test_a_replaced_tokenizer_key_says_what_replaced_it():
    """A run written before tokenizer format 8 has components_per_level in its config.yaml."""
    with pytest.raises(ConfigError, match="components_per_level was replaced by components_per_stream"):
        tiny_config(**{"tokenizer.model.components_per_level": "[4, 2, 3]"})
    with pytest.raises(ConfigError, match=r"components_per_stream \(9\) must be <= latent_dim \(8\)"):
        tiny_config(**{"tokenizer.model.components_per_stream": 9})


def test_out_of_range_value_is_reported_with_value():
    with pytest.raises(ConfigError, match=r"simulation.steps: .*greater than or equal to 1 \(got 0\)"):
        tiny_config(**{"simulation.steps": 0})


def test_choice_value_not_supported_by_family():
    with pytest.raises(ConfigError, match=r"values \['swish'\] not allowed"):
        tiny_config(**{"parameters.activation.values": "[relu, swish]"})


def test_missing_and_unknown_parameters():
    with pytest.raises(ConfigError, match="unknown parameter"):
        tiny_config(**{"parameters.dropout": "{type: continuous, low: 0, high: 1}"})


def test_batch_must_divide_shard():
    with pytest.raises(ConfigError, match="multiple of simulation.batch_operators"):
        tiny_config(**{"sharding.operators_per_shard": 6})


def test_ic_params_validated_by_type_model():
    with pytest.raises(ConfigError, match="invalid params for IC type 'gaussian_random_field'"):
        tiny_config(**{"initial_conditions.mix": "[{type: gaussian_random_field, params: {betta: 2}}]"})
    with pytest.raises(ConfigError, match="unknown IC type 'nope'"):
        tiny_config(**{"initial_conditions.mix": "[{type: nope}]"})


def test_override_into_scalar_is_an_error():
    with pytest.raises(ConfigError, match="is a value, not a section"):
        tiny_config(**{"seed.x": 1})


def test_fixed_parameters_are_filled_from_family_defaults():
    cfg = config_from_dict({"simulation": {"batch_operators": 8}})
    assert cfg.parameters is not None and "depth" in cfg.parameters


def test_validate_cli_exit_codes(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("simulation: {grid: 4}\n")
    cmd = [sys.executable, "-m", "spinlock.cli.main", "validate"]
    ok = subprocess.run([*cmd, str(ROOT / "configs/quickstart.yaml")], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0 and "config hash" in ok.stdout
    res = subprocess.run([*cmd, str(bad)], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2
    assert "simulation.grid" in res.stderr and "Traceback" not in res.stderr
    missing = subprocess.run([*cmd, str(tmp_path / "nope.yaml")], capture_output=True, text=True, cwd=ROOT)
    assert missing.returncode == 2 and "config file not found" in missing.stderr

"""One contract suite over every registered IC type (sklearn-style estimator checks).

Each type must be deterministic per key, differ across keys, give a sample independently of the batch it
is generated in, be finite float32 on the requested device, follow the amplitude convention (zero mean,
unit std per sample and channel), work for C = 1 and C = 5 and tiny grids, reject misspelt parameters,
and document every parameter.
"""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from spinlock.config.ics import ICEntry
from spinlock.ics import generate_ic, get_ic_type, ic_types
from spinlock.ics.registry import TIER_NAMES
from spinlock.rng import derive_key

NAMES = list(ic_types())
GRID = 32
KEYS = [derive_key(7, "ics-contract", i) for i in range(4)]


def test_registry_has_28_types_in_5_tiers():
    per_tier = {t: sum(ic.tier == t for ic in ic_types().values()) for t in TIER_NAMES}
    assert per_tier == {0: 7, 1: 5, 2: 5, 3: 5, 4: 6}
    with pytest.raises(ValueError, match="unknown IC type 'gaussian_random_feld'.*expected one of"):
        get_ic_type("gaussian_random_feld")


@pytest.fixture(scope="module", params=NAMES)
def batch(request):
    name = request.param
    return name, generate_ic(name, {}, KEYS, 3, GRID)


def test_shape_dtype_finite_and_amplitude_convention(batch):
    name, x = batch
    assert x.shape == (4, 3, GRID, GRID) and x.dtype == torch.float32 and x.device.type == "cpu"
    assert torch.isfinite(x).all()
    mean = x.double().mean(dim=(-2, -1))
    std = x.double().std(dim=(-2, -1), correction=0)
    assert mean.abs().max() < 1e-4, f"{name}: per-channel mean {mean}"
    assert (std - 1).abs().max() < 1e-3, f"{name}: per-channel std {std}"


def test_deterministic_and_key_dependent(batch):
    name, x = batch
    assert torch.equal(x, generate_ic(name, {}, KEYS, 3, GRID)), f"{name}: not deterministic"
    other = generate_ic(name, {}, [k + 1 for k in KEYS], 3, GRID)
    for b in range(4):
        assert (x[b] - other[b]).abs().max() > 1e-2, f"{name}: sample {b} ignores its key"


def test_sample_independent_of_batch(batch):
    name, x = batch
    alone = generate_ic(name, {}, [KEYS[2]], 3, GRID)
    assert torch.allclose(alone[0], x[2], atol=1e-5, rtol=0), f"{name}: sample depends on its batch"
    reordered = generate_ic(name, {}, [KEYS[3], KEYS[1]], 3, GRID)
    assert torch.allclose(reordered[1], x[1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_channel_counts_and_small_grid(name):
    for channels, grid in ((1, GRID), (5, GRID), (2, 16)):
        x = generate_ic(name, {}, KEYS[:2], channels, grid)
        assert x.shape == (2, channels, grid, grid)
        assert torch.isfinite(x).all()
        assert (x.std(dim=(-2, -1), correction=0) - 1).abs().max() < 1e-3, f"{name}: C={channels} grid={grid}"


@pytest.mark.parametrize("name", NAMES)
def test_misspelt_param_is_rejected(name):
    ic = get_ic_type(name)
    first = next(iter(ic.params.model_fields))
    with pytest.raises(ValidationError, match=f"{first}x"):
        generate_ic(name, {first + "x": 1}, KEYS[:1], 1, 16)
    with pytest.raises(ValueError, match=f"invalid params for IC type '{name}'.*{first}x"):
        ICEntry(type=name, params={first + "x": 1})


@pytest.mark.parametrize("name", NAMES)
def test_params_documented_and_defaults_round_trip(name):
    ic = get_ic_type(name)
    assert ic.description.endswith(".") and ic.channels
    for field_name, field in ic.params.model_fields.items():
        assert field.description, f"{name}.{field_name} has no docstring"
    resolved = ICEntry(type=name).params
    assert ic.params(**resolved) == ic.params()  # the resolved YAML form validates back to the defaults


def test_span_validation_names_the_problem():
    with pytest.raises(ValueError, match="low <= high"):
        ICEntry(type="turing_pattern", params={"wavelength": [0.2, 0.1]})
    with pytest.raises(ValueError, match="wavelength"):
        ICEntry(type="turing_pattern", params={"wavelength": [0.001, 0.1]})
    with pytest.raises(ValueError, match="distinct"):
        ICEntry(type="structured", params={"patterns": ["stripes", "stripes"]})
    with pytest.raises(ValueError, match="patterns"):
        ICEntry(type="structured", params={"patterns": ["squares"]})

"""Behaviour census: one class per operator from /status and four SUMMARY columns (no extra rollout).

Parameter-space coverage is not behaviour coverage: a Sobol design spreads operators evenly over the
parameters, yet many of them may diverge, decay to a constant, drown in their own noise or settle on
grid-scale stripes. The census says how many, so a user can narrow the parameter ranges before a large
run. /status decides first (fault, diverged, other codes undetermined); an ok operator then gets the first
of collapsed → noise_dominated → grid_scale whose rule holds, else structured, and is undetermined if it
reaches a rule whose input is NaN or absent.

All inputs are ``late`` pools (the mean over the last quarter of a statistic's sampled steps), so the
class describes where the rollout ends, not how it started. Thresholds are module constants with their
reasons here and in docs/features.md (*Behaviour census*); they were set by looking at the quickstart's
operators class by class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spinlock.storage.layout import STATUS_DIVERGED, STATUS_FAULT, STATUS_OK

COLLAPSE_LOG_RATIO = -1.5
"""collapsed: log10 σ_late - max(0, log10 max|x|_late) ≤ this, i.e. the spatial std is at most 3 % (30 dB of
energy below) of the larger of the IC's std (1, by the amplitude convention) and the final amplitude.
At 3 % every quickstart operator below it renders as a uniform field; the next ones up (4-6 %) still
show a faint pattern or noise floor."""
NOISE_FRACTION = 0.5
"""noise_dominated: φ = M/(M-1) · 10^(2·spread.field.late) ≥ this. φ is the unbiased estimate of the
fraction of the state's mean square that differs between realizations (1 for independent realizations,
0 when the noise changes nothing), so ≥ 0.5 means the noise draw, not the operator and IC, sets most of
the field."""
GRID_SCALE_FRACTION = 0.5
"""grid_scale: spectral.band4.late > this, i.e. most of the (standardised) power at |k| > k_nyq/2 = H/4:
wavelengths shorter than 4 cells, which the grid barely resolves (checkerboards, Nyquist stripes)."""

LOG_STD, LOG_ABSMAX = "spatial.log_std.late", "spatial.log_absmax.late"
SPREAD, BAND4 = "spread.field.late", "spectral.band4.late"


@dataclass(frozen=True)
class CensusClass:
    name: str
    code: int
    criterion: str


CLASSES: tuple[CensusClass, ...] = (
    CensusClass("fault", 0, f"/status = {STATUS_FAULT}: a non-finite value the dynamics did not cause"),
    CensusClass("diverged", 1, f"/status = {STATUS_DIVERGED}: the state grew past the divergence threshold or "
                "became non-finite"),
    CensusClass("undetermined", 2, "any other /status code, or an ok operator whose census input is NaN or "
                "whose category was not extracted (a rule it reached could not be evaluated)"),
    CensusClass("collapsed", 3, f"`{LOG_STD}` - max(0, `{LOG_ABSMAX}`) ≤ {COLLAPSE_LOG_RATIO}: the field ends "
                "(nearly) spatially constant, at most 3 % of the IC's std or of its own amplitude"),
    CensusClass("noise_dominated", 4, f"M/(M-1) · 10^(2·`{SPREAD}`) ≥ {NOISE_FRACTION}: most of the final "
                "state's mean square differs between realizations (not assessed with M = 1)"),
    CensusClass("grid_scale", 5, f"`{BAND4}` > {GRID_SCALE_FRACTION}: most of the power at |k| > H/4 "
                "(wavelengths under 4 cells: checkerboards, Nyquist stripes)"),
    CensusClass("structured", 6, "none of the above: a resolved, reproducible, non-trivial final field"),
)
"""Every class with its code (= position) and rule. Codes are stable: new classes are appended."""
NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)
CODE = {c.name: c.code for c in CLASSES}
assert all(c.code == i for i, c in enumerate(CLASSES))

_RULE_INPUTS = {"collapsed": (LOG_STD, LOG_ABSMAX), "noise_dominated": (SPREAD,), "grid_scale": (BAND4,)}
INPUTS: tuple[str, ...] = (LOG_STD, LOG_ABSMAX, SPREAD, BAND4)
"""The only /features/summary columns the census reads."""


def rule_notes(names: Sequence[str], realizations: int) -> list[str]:
    """Why a rule cannot work on this run at all: M = 1 (never assigns its class) or a missing column
    (its category was not extracted: the ok operators that reach it are undetermined)."""
    notes = [f"noise_dominated not assessed (M = {realizations})"] if realizations < 2 else []
    have = set(names)
    for rule, inputs in _RULE_INPUTS.items():
        missing = [c for c in inputs if c not in have]
        if missing and not (rule == "noise_dominated" and realizations < 2):
            notes.append(f"{rule} undecidable: no summary column {', '.join(missing)}")
    return notes


def classify(summary: np.ndarray, names: Sequence[str], status: np.ndarray, realizations: int) -> np.ndarray:
    """Census code of every operator → int8 [N] (``NAMES[code]`` is its class).

    ``summary`` [N, D] holds /features/summary with column ``names`` (only the four census columns are
    read; a missing one makes its rule undecidable), ``status`` [N] is /status and ``realizations`` the
    run's M (the noise rule needs M ≥ 2 and the M/(M-1) correction).
    """
    if realizations < 1:
        raise ValueError(f"realizations must be >= 1, got {realizations}")
    status = np.asarray(status)
    n = status.shape[0]
    if summary.shape[0] != n:
        raise ValueError(f"summary has {summary.shape[0]} rows but status has {n}")
    index = {name: j for j, name in enumerate(names)}

    def column(name: str) -> np.ndarray:
        j = index.get(name)
        return summary[:, j].astype(np.float64) if j is not None else np.full(n, np.nan)

    codes = np.full(n, CODE["undetermined"], np.int8)
    codes[status == STATUS_FAULT] = CODE["fault"]
    codes[status == STATUS_DIVERGED] = CODE["diverged"]
    todo = status == STATUS_OK
    with np.errstate(invalid="ignore", over="ignore"):
        tests = {
            "collapsed": column(LOG_STD) - np.maximum(column(LOG_ABSMAX), 0.0) <= COLLAPSE_LOG_RATIO,
            "noise_dominated": realizations / max(realizations - 1, 1) * 10.0 ** (2.0 * column(SPREAD))
            >= NOISE_FRACTION,
            "grid_scale": column(BAND4) > GRID_SCALE_FRACTION,
        }
    for rule, holds in tests.items():
        if rule == "noise_dominated" and realizations < 2:
            continue  # spread.field is NaN by construction: not assessed (rule_notes), not undetermined
        known = np.all([np.isfinite(column(c)) for c in _RULE_INPUTS[rule]], axis=0)
        todo &= known  # an operator this rule cannot decide stays undetermined
        hit = todo & holds
        codes[hit] = CODE[rule]
        todo &= ~hit
    codes[todo] = CODE["structured"]
    return codes


def counts(codes: np.ndarray) -> dict[str, int]:
    """Operators per class, every class listed (in :data:`CLASSES` order)."""
    c = np.bincount(np.asarray(codes, np.int64), minlength=len(CLASSES))
    return {name: int(c[i]) for i, name in enumerate(NAMES)}


def format_counts(codes: np.ndarray) -> str:
    """``structured 91 (35.5 %), ...`` for the non-empty classes, most populated first."""
    c = counts(codes)
    n = max(1, sum(c.values()))
    order = sorted((k for k in NAMES if c[k]), key=lambda k: (-c[k], CODE[k]))
    return ", ".join(f"{k} {c[k]} ({100 * c[k] / n:.1f} %)" for k in order) or "no operators"

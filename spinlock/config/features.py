"""Feature-extraction section (owned by ``spinlock.features``; docs/features.md defines every column).

The SUMMARY family is split into categories that can be switched off. Per-step statistics are sampled
on two schedules: the cheap ones every ``step_stride`` steps, those that need an FFT, a histogram,
quantiles or connected-component labelling every ``field_stride`` steps (both plus the last step); the
operator sensitivity probes are a fixed count spread evenly over the run, so short runs still get enough
of them. None of these settings changes a column's *name* except ``categories`` (a disabled category has
no columns).
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, model_validator

from spinlock.config.strict import Strict

SummaryCategory = Literal[
    "spatial", "spectral", "cross", "morphology", "dynamics", "causality", "invariants", "sensitivity", "spread"
]
SUMMARY_CATEGORIES: tuple[str, ...] = get_args(SummaryCategory)


class SensitivityConfig(Strict):
    """Finite-difference probes of the deterministic operator f (``LiveOperator.apply``)."""

    probes: int = Field(4, ge=2, le=4096)
    """Probe the state of realization 0 at this many steps spread evenly over the run,
    ⌊i·steps/(probes − 1)⌋ for i = 0..probes−1 (step 0 and the last step included; fewer when
    steps + 1 < probes). A count, not a stride, so every pool has several samples at any run length.
    Each probe costs about 3/M of one rollout step (three extra operator evaluations on one realization):
    4 keeps every pool defined and distinct at any run length at ≈ 2 % of the rollout each on the
    quickstart (T = 64); long runs can afford more (configs/baseline-10k.yaml: 8 in 500 steps)."""
    epsilon: float = Field(1e-3, gt=0.0, le=1.0)
    """Size of the small perturbation, relative to the RMS of the probed state (local Lipschitz gain)."""
    large_epsilon: float = Field(0.1, gt=0.0, le=10.0)
    """Size of the large perturbation; log10 of its gain over the small one is ``nonlinearity``."""

    replaced = {"stride": "stride was replaced by probes (a count of probe steps spread over the run; default 4):"
                       " remove features.sensitivity.stride"}

    @model_validator(mode="after")
    def _order(self) -> SensitivityConfig:
        if self.large_epsilon <= self.epsilon:
            raise ValueError(
                f"large_epsilon ({self.large_epsilon}) must be greater than epsilon ({self.epsilon})"
            )
        return self


class FeaturesConfig(Strict):
    """The ``features:`` section: which SUMMARY categories to compute and how often to sample."""

    categories: tuple[SummaryCategory, ...] = Field(SUMMARY_CATEGORIES, min_length=1)
    """SUMMARY categories to compute (the full default set gives 434 columns). The TEMPORAL
    family holds the per-step statistics of the enabled categories."""
    step_stride: int = Field(2, ge=1)
    """(Like the other strides, capped at ⌊steps/4⌋ so a short run still has >= 4 samples.) Moments,
    extremes, cross-channel and lag-1 correlations, step change and realization spread are
    sampled at the multiples of this plus the last step (lag-1 statistics always compare consecutive
    states; the scalar history behind the growth and series features records every step)."""
    field_stride: int = Field(8, ge=1)
    """Spectra, quantiles, histograms (entropy, mutual information), morphology and the multi-scale
    invariants are sampled for SUMMARY at steps that are multiples of this, plus the last step (capped at
    ⌊steps/4⌋: at least 4 samples; a stride above steps left one, and all-NaN std/trend columns)."""
    temporal_stride: int = Field(8, ge=1)
    """TEMPORAL curves are sampled at steps 0, stride, 2·stride, ... <= steps (stride capped at ⌊steps/4⌋)."""
    morphology_threshold: float = Field(1.0, gt=0.0, le=5.0)
    """Connected components are those of {z > θ} and {z < -θ}, z the standardised field."""
    history_length: int = Field(1024, ge=16, le=65536)
    """At most this many samples of the per-step scalar series (energy, mean, per-channel energy) are
    kept for autocorrelation / temporal-frequency / causality features; longer rollouts record every
    ceil((steps + 1) / history_length)-th step."""
    sensitivity: SensitivityConfig = SensitivityConfig()

    @model_validator(mode="after")
    def _unique(self) -> FeaturesConfig:
        dup = sorted({c for c in self.categories if self.categories.count(c) > 1})
        if dup:
            raise ValueError(f"categories: repeated {dup}; expected each of {list(SUMMARY_CATEGORIES)} at most once")
        return self

"""The one registry of feature names: column order and definitions of all four families.

Every extractor assembles its output from these lists (and asserts it did), so a column's position,
name and definition cannot drift apart. Names depend only on the config (parameter space, enabled
SUMMARY categories), never on the batch, C, M or T; a statistic that is undefined for a run (cross-
channel with C = 1, realization spread with M = 1, a trend from one sample) is NaN, never missing.

SUMMARY columns are ``category.feature.pool``; TEMPORAL columns are ``category.feature`` (the per-step
statistic, realization mean); INITIAL columns reuse the per-step definitions; ARCHITECTURE columns are
``param.NAME`` / ``param.NAME=VALUE`` / ``derived.KEY``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from spinlock.config.features import SUMMARY_CATEGORIES, FeaturesConfig
from spinlock.config.models import RunConfig
from spinlock.config.parameters import ChoiceSpec
from spinlock.operators.registry import DERIVED_KEYS

Schedule = Literal["step", "field", "probe"]


@dataclass(frozen=True)
class Stat:
    """A per-step statistic, computed per (operator, realization[, channel]) and pooled over channels."""

    name: str
    doc: str
    schedule: Schedule = "step"
    """``step`` / ``field``: sampled at the multiples of features.step_stride / field_stride (plus T);
    ``probe``: at the sensitivity probe steps (features.sensitivity.probes of them, spread over 0..T)."""
    temporal: bool = True
    """Whether it is a TEMPORAL column (False where another temporal column is the same curve)."""


@dataclass(frozen=True)
class StatCategory:
    """A switchable SUMMARY category (``features.categories``): its per-step statistics and pools."""

    name: str
    doc: str
    stats: tuple[Stat, ...]
    """Per-step statistics, each pooled over time with every pool of ``pools``."""
    pools: tuple[str, ...]
    extras: tuple[tuple[str, str], ...] = ()
    """Once-per-operator features ``(feature.pool, definition)`` computed at the end of the rollout."""


POOLS = ("mean", "std", "min", "max", "early", "late", "trend")
DRIFT_POOLS = ("drift", "path", "maxdev")
POOL_DOCS = {
    "mean": "mean over the sampled steps",
    "std": "sample standard deviation over the sampled steps (NaN with < 2 samples)",
    "min": "minimum over the sampled steps",
    "max": "maximum over the sampled steps",
    "early": "mean over the first quarter (rounded up) of the sampled steps",
    "late": "mean over the last quarter (rounded up) of the sampled steps",
    "trend": "least-squares slope against normalised time t/T (NaN with < 2 samples)",
    "drift": "value at the last sampled (pre-divergence) step minus the value at step 0",
    "path": "mean absolute change between consecutive samples (step 0 included)",
    "maxdev": "maximum absolute deviation from the value at step 0",
}

SPATIAL = StatCategory(
    "spatial",
    "Single-field statistics of x (per channel, then channel mean). z = (x - μ)/σ is the standardised "
    "field (σ regularised by 1e-6·RMS so a constant field gives z = 0); differences are periodic.",
    (
        Stat("mean", "spatial mean μ"),
        Stat("offset", "μ / RMS(x), in [-1, 1]"),
        Stat("log_std", "log10 σ (floored at 1e-30)"),
        Stat("log_absmax", "log10 max|x| (floored at 1e-30)"),
        Stat("skew", "E[z³]"),
        Stat("kurt", "E[z⁴] - 3 (a constant field gives -3)"),
        Stat("q05", "5% quantile of z", "field"),
        Stat("q25", "25% quantile of z", "field"),
        Stat("q50", "median of z", "field"),
        Stat("q75", "75% quantile of z", "field"),
        Stat("q95", "95% quantile of z", "field"),
        Stat("entropy", "Shannon entropy of the 16-bin histogram of z clipped to [-4, 4], / ln 16", "field"),
        Stat("log_grad", "log10 mean(|∇⁺x|²), forward differences ∂⁺x = x(i+1) - x(i) in both axes "
                         "(exact, from the spectrum)", "field"),
        Stat("grad_ratio", "mean(|∇⁺x|²)/σ²; a sine of wavenumber k in one axis gives 2(1 - cos 2πk/N)",
             "field"),
        Stat("lap_ratio", "mean((Δx)²)/σ², 5-point Laplacian (exact, from the spectrum)", "field"),
        Stat("anisotropy", "ln(mean(∂⁺ₓx)² / mean(∂⁺ᵧx)²) (x = last axis); 0 for isotropic fields", "field"),
        Stat("tv", "total variation mean(|∂⁺ₓz| + |∂⁺ᵧz|)", "field"),
        Stat("crossings", "fraction of neighbour pairs (both axes) across which x - μ changes sign", "field"),
    ),
    POOLS,
)

SPECTRAL = StatCategory(
    "spectral",
    "Isotropic power spectrum of z: shell sums S(k) over integer shells k = round(|k⃗|) (k⃗ in cycles "
    "per domain), k_nyq = N//2, DC excluded. A zero field gives bands/centroid/peak/entropy 0, flatness 1.",
    (
        Stat("band1", "fraction of power with 0 < k/k_nyq <= 1/8", "field"),
        Stat("band2", "fraction of power with 1/8 < k/k_nyq <= 1/4", "field"),
        Stat("band3", "fraction of power with 1/4 < k/k_nyq <= 1/2", "field"),
        Stat("band4", "fraction of power with k/k_nyq > 1/2", "field"),
        Stat("slope", "slope of log10 shell-mean power vs log10 k, 1 <= k <= k_nyq, least squares weighted by "
                      "the modes per shell", "field"),
        Stat("centroid", "Σ k S(k) / Σ S(k), divided by k_nyq", "field"),
        Stat("peak", "dominant wavenumber: power-weighted mean of k over the argmax shell ±1, / k_nyq", "field"),
        Stat("entropy", "Shannon entropy of S(k)/Σ S over shells, / ln(number of shells)", "field"),
        Stat("flatness", "geometric / arithmetic mean of the shell-mean power, 1 <= k <= k_nyq", "field"),
    ),
    POOLS,
)

CROSS = StatCategory(
    "cross",
    "Cross-channel structure at one step (NaN for C = 1). ρ_ab = spatial correlation of channels a, b.",
    (
        Stat("corr_mean", "mean of ρ_ab over channel pairs a ≠ b"),
        Stat("corr_abs", "mean of |ρ_ab| over a ≠ b"),
        Stat("corr_maxabs", "max of |ρ_ab| over a ≠ b"),
        Stat("mi", "mutual information (nats) of the 8×8 histogram of (z_c, z_{c+1 mod C}) on [-3, 3], "
                   "mean over the adjacent pairs (one pair for C = 2)", "field"),
    ),
    POOLS,
)

MORPHOLOGY = StatCategory(
    "morphology",
    "Connected components (4-connectivity, periodic wrap) of {z > θ} ('pos') and {z < -θ} ('neg'), "
    "θ = features.morphology_threshold; labelled on the CPU with scipy.ndimage.",
    (
        Stat("pos_count", "number of positive components", "field"),
        Stat("neg_count", "number of negative components", "field"),
        Stat("pos_area", "mean positive component area as a fraction of the grid (0 without components)",
             "field"),
        Stat("largest", "largest positive component area / total positive area (0 without components)",
             "field"),
        Stat("coverage", "fraction of cells with |z| > θ", "field"),
    ),
    POOLS,
)

_SERIES_DOCS = (
    ("acf1", "autocorrelation at lag 1 (history samples) of the linearly detrended series"),
    ("acf2", "autocorrelation at lag 2"),
    ("acf4", "autocorrelation at lag 4"),
    ("acf8", "autocorrelation at lag 8 (NaN when the series is shorter)"),
    ("decay", "first lag (in steps, / T) where the autocorrelation drops below 1/e"),
    ("dom_freq", "dominant temporal frequency (cycles per step): power-weighted mean frequency of the "
                 "periodogram peak ±1 bin, DC excluded"),
    ("dom_power", "fraction of the periodogram power in the peak ±1 bin"),
    ("spec_entropy", "Shannon entropy of the periodogram (DC excluded), / ln(number of bins)"),
    ("spike_frac", "fraction of increments farther than 3 MAD from the median increment"),
    ("incr_kurt", "excess kurtosis of the increments (burstiness)"),
    ("stationarity", "(mean of second half - mean of first half) / std of the series (NaN if constant)"),
    ("var_ratio", "log10 of the detrended variance of the second half over that of the first half"),
)
SERIES = ("energy", "mean")
SERIES_DOCS = {
    "energy": "ln RMS of the state over (C, H, W)",
    "mean": "spatial and channel mean of the state",
}

DYNAMICS = StatCategory(
    "dynamics",
    "Trajectory dynamics per realization (then realization mean). Series features use the scalar history "
    "(energy = ln RMS of the state, mean = its spatial-channel mean) at steps 0..T, detrended; they are "
    "NaN when the detrended series has no variance.",
    (
        Stat("step_change", "log10 RMS(x_t - x_{t-1}) / RMS(x_{t-1}); -> -inf at a fixed point (floored)"),
        Stat("field_acf1", "spatial correlation of z_t and z_{t-1}, channel mean"),
    ),
    POOLS,
    (
        ("growth_rms.all", "least-squares slope of ln RMS(x_t) vs t over the history steps 0..T (log factor "
                           "per step)"),
        ("growth_rms.early", "same over the history steps t <= T/2"),
        ("growth_rms.late", "same over the history steps t >= T/2"),
        ("growth_std.all", "least-squares slope of ln σ(x_t) (σ² = channel mean of the variances) vs t, "
                           "history steps 0..T"),
        ("growth_std.early", "same over the history steps t <= T/2"),
        ("growth_std.late", "same over the history steps t >= T/2"),
        *((f"{s}.{k}", f"{SERIES_DOCS[s]}: {d}") for s in SERIES for k, d in _SERIES_DOCS),
        ("recurrence.ratio", "mean over the late-half field steps of min_{2<=L<=16} d_L / d_1, d_L = RMS "
                             "distance of the 8×8 block-averaged state to its value L steps earlier; ~0 on a "
                             "cycle of period L"),
        ("recurrence.lag", "mean over the same steps of the argmin L of the recurrence ratio"),
    ),
)

CAUSALITY = StatCategory(
    "causality",
    "Directional coupling between channels and time-irreversibility. L_ab = spatial correlation of "
    "z_a(t-1) and z_b(t); pair statistics NaN for C = 1.",
    (
        Stat("lag_cross", "mean of L_ab over a ≠ b"),
        Stat("asym_net", "mean over a < b of L_ab - L_ba (> 0: lower-index channels lead)"),
        Stat("asym_abs", "mean over a < b of |L_ab - L_ba|"),
        Stat("asym_max", "max over a < b of |L_ab - L_ba|"),
    ),
    POOLS,
    (
        ("energy.irreversibility", "skewness of the increments of the energy series (time-reversal asymmetry)"),
        ("mean.irreversibility", "skewness of the increments of the mean series"),
        ("series_asym.lag1", "mean over a < b of |R_ab(1) - R_ba(1)|, R_ab(k) the correlation of the "
                             "detrended ln RMS series of channel a at t with channel b at t + k"),
        ("series_asym.lag2", "same at lag 2 history samples"),
        ("series_asym.lag4", "same at lag 4 history samples"),
    ),
)

_INV = []
for _s in (1, 2, 4):
    _t = _s > 1  # the scale-1 curves are (nearly) those of spatial.log_std / log_absmax / log_grad / entropy
    _INV += [
        Stat(f"l2_s{_s}", f"log10 RMS of the {_s}×{_s} block-averaged field y (channel mean)", "field", _t),
        Stat(f"linf_s{_s}", f"log10 max|y| of the {_s}×{_s} block-averaged field (channel mean)", "field", _t),
        Stat(f"grad_s{_s}", f"log10 mean |∇⁺y|² of the {_s}×{_s} block-averaged field (channel mean)", "field", _t),
        Stat(f"entropy_s{_s}", f"16-bin histogram entropy of the standardised {_s}×{_s} block-averaged field",
             "field", _t),
    ]
INVARIANTS = StatCategory(
    "invariants",
    "Drift of would-be invariants — L2 and L∞ norms, gradient energy (enstrophy) and histogram entropy — at "
    "spatial scales 1, 2 and 4 (block averages), sampled at step 0 and the field steps. Norm drifts are "
    "log10 ratios.",
    tuple(_INV),
    DRIFT_POOLS,
)

SENSITIVITY = StatCategory(
    "sensitivity",
    "Finite-difference probes of the deterministic operator f on realization 0 at n = "
    "features.sensitivity.probes steps ⌊i·T/(n − 1)⌋, i = 0..n−1, spread over the run, direction δ a "
    "unit-RMS normal field from the generator keyed (seed, 'sensitivity', operator) spawned per step, "
    "perturbation ε·(RMS(x) + 1e-6). f is evaluated in float32 outside autocast whatever "
    "simulation.precision, so the probes do not depend on the rollout precision.",
    (
        Stat("lipschitz", "log10 RMS(f(x + εδ) - f(x)) / RMS(εδ), ε = sensitivity.epsilon", "probe", False),
        Stat("gain", "log10 RMS(f(x)) / RMS(x)", "probe", False),
        Stat("nonlinearity", "log10 of the finite-difference gain at large_epsilon over that at epsilon",
             "probe", False),
    ),
    POOLS,
)

SPREAD = StatCategory(
    "spread",
    "Spread across realizations (NaN for M = 1). The '.std' columns are the sample standard deviation "
    "over realizations of the per-realization time mean of a per-step statistic.",
    (Stat("field", "log10 sqrt(mean over cells and channels of the variance across realizations) / RMS(x)"),),
    POOLS,
    (
        ("growth_rms.std", "std over realizations of dynamics.growth_rms.all"),
    ),
)

CATEGORIES: dict[str, StatCategory] = {
    c.name: c
    for c in (SPATIAL, SPECTRAL, CROSS, MORPHOLOGY, DYNAMICS, CAUSALITY, INVARIANTS, SENSITIVITY, SPREAD)
}
assert tuple(CATEGORIES) == SUMMARY_CATEGORIES

SPREAD_SOURCES = ("spatial", "spectral", "cross", "morphology", "dynamics")
"""Categories whose per-step statistics get a ``spread.<category>_<stat>.std`` column."""

INITIAL_STATS = (
    "spatial.skew", "spatial.kurt", "spatial.log_absmax", "spatial.entropy", "spatial.grad_ratio",
    "spatial.lap_ratio", "spatial.anisotropy", "spectral.slope", "spectral.centroid",
    "morphology.pos_count", "morphology.pos_area", "morphology.neg_count", "cross.corr_mean", "cross.corr_abs",
)
"""The 14 hand-crafted INITIAL features (same definitions as the per-step statistics, applied to the IC).
The seed representation is 42-D: the other 28 are a learned IC embedding trained by the tokenizer."""

EXTRA_DERIVED = (
    ("noise_effective", "log10 of b · σ · mean_t s(t), floored 1e-12: the std of the noise entering the state "
                        "per step (relative to the operator output for multiplicative noise), with b the "
                        "operator weight of step_effective (1 autoregressive, dt residual, α convex), σ the "
                        "noise level and s(t) the schedule factor"),
    ("memory", "weight a of x_t in x_{t+1} = a x_t + b ỹ: 0 autoregressive, 1 residual, 1 - α convex"),
    ("step_effective", "weight b of the operator output: 1 autoregressive, dt residual, α convex"),
    ("noise_corr_effective", "noise correlation length for correlated noise, else 0"),
    ("gain_depth", "effective_depth · log10 weight_gain (log of the linearised end-to-end gain)"),
)


def enabled(fc: FeaturesConfig) -> list[StatCategory]:
    """Enabled categories in registry order (the config's order does not change the columns)."""
    return [c for name, c in CATEGORIES.items() if name in fc.categories]


def step_stats(fc: FeaturesConfig) -> list[tuple[str, Stat]]:
    """(``category.stat``, Stat) for every per-step statistic of the enabled categories."""
    return [(f"{c.name}.{s.name}", s) for c in enabled(fc) for s in c.stats]


def spread_targets(fc: FeaturesConfig) -> list[str]:
    """``category.stat`` keys that get a realization-spread column."""
    return [k for k, s in step_stats(fc) if k.split(".")[0] in SPREAD_SOURCES]


def summary_entries(fc: FeaturesConfig) -> list[tuple[str, str]]:
    """(name, definition) of every SUMMARY column, in column order."""
    out: list[tuple[str, str]] = []
    for c in enabled(fc):
        out += [(f"{c.name}.{s.name}.{p}", f"{s.doc}; {POOL_DOCS[p]}") for s in c.stats for p in c.pools]
        out += [(f"{c.name}.{n}", d) for n, d in c.extras]
        if c.name == "spread":
            out += [
                (f"spread.{k.replace('.', '_')}.std", f"std over realizations of the time mean of {k}")
                for k in spread_targets(fc)
            ]
    return out


def summary_names(fc: FeaturesConfig) -> tuple[str, ...]:
    return tuple(n for n, _ in summary_entries(fc))


def temporal_entries(fc: FeaturesConfig) -> list[tuple[str, str]]:
    return [(k, s.doc) for k, s in step_stats(fc) if s.temporal]


def temporal_names(fc: FeaturesConfig) -> tuple[str, ...]:
    return tuple(n for n, _ in temporal_entries(fc))


def initial_entries() -> list[tuple[str, str]]:
    docs = {f"{c.name}.{s.name}": s.doc for c in CATEGORIES.values() for s in c.stats}
    return [(k, docs[k]) for k in INITIAL_STATS]


def initial_names() -> tuple[str, ...]:
    return INITIAL_STATS


def _value_label(v: object) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def architecture_entries(cfg: RunConfig) -> list[tuple[str, str]]:
    """Normalised non-fixed parameters (choices one-hot) then derived quantities."""
    out: list[tuple[str, str]] = []
    for name, spec in cfg.parameters.items():
        if spec.is_fixed:
            continue  # a constant column carries no information
        if isinstance(spec, ChoiceSpec):
            out += [(f"param.{name}={_value_label(v)}", f"1 if {name} == {v!r} else 0") for v in spec.values]
        elif spec.type == "boolean":
            out.append((f"param.{name}", f"{name} as 0/1"))
        elif spec.type == "integer":
            out.append((f"param.{name}", f"({name} - {spec.low}) / ({spec.high} - {spec.low})"))
        else:
            how = "log scale" if spec.scale == "log" else "linear scale"
            out.append((f"param.{name}", f"{name} mapped to [0, 1] on its {how} [{spec.low}, {spec.high}]"))
    out += [(f"derived.{k}", f"family-derived {k} (operators.registry.DERIVED_KEYS)") for k in DERIVED_KEYS]
    out += [(f"derived.{k}", d) for k, d in EXTRA_DERIVED]
    names = [n for n, _ in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"parameters: choice values give duplicate architecture column names {dup}")
    return out


MIN_SAMPLES = 4
"""Every stride schedule is capped at ⌊T/4⌋ (at least 1), so short runs still get >= 4 samples."""


def effective_stride(stride: int, steps: int) -> int:
    """min(stride, ⌊steps/4⌋), at least 1: a stride longer than a quarter of the run would leave too few
    samples (one at T < stride: all-NaN std/trend and min = max = mean = early = late)."""
    return max(1, min(stride, steps // MIN_SAMPLES))


def temporal_steps(cfg: RunConfig) -> list[int]:
    """Steps at which TEMPORAL curves are sampled: 0, s, 2s, ... <= T, s = effective_stride(temporal_stride)."""
    T = cfg.simulation.steps
    return list(range(0, T + 1, effective_stride(cfg.features.temporal_stride, T)))


def feature_names(cfg: RunConfig) -> dict[str, tuple[str, ...]]:
    """Column names of the four families, straight from the registry (no dry run)."""
    return {
        "initial": initial_names(),
        "architecture": tuple(n for n, _ in architecture_entries(cfg)),
        "summary": summary_names(cfg.features),
        "temporal": temporal_names(cfg.features),
    }

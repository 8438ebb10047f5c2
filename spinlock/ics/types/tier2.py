"""Tier 2 — specialized IC types: causal wavefronts, critical fluctuations, phase boundaries,
excitable waves and controlled local entropy.

Each type registers its unstandardised core ``*_raw`` [B, C, H, W] (what the property tests measure);
:func:`spinlock.ics.generate_ic` standardises it.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
from pydantic import Field

from spinlock.ics.base import register
from spinlock.ics.geometry import coords, offsets, sq_distance, tanh_profile
from spinlock.ics.noise import quantile_rows, smooth_random_field, white_noise
from spinlock.ics.params import ICParams, choices, draw, draw_choice, draw_int, ispan, span
from spinlock.ics.spectral import TWO_PI, filtered_noise, spectral_gradient, wavenumbers
from spinlock.rng import BatchRandom


# --------------------------------------------------------------------------------------------------
class LightConeParams(ICParams):
    speed: span(0.0, 0.95) = (0.0, 0.8)
    """Emitter speed β = v/c (c = 1 domain per unit time)."""
    radius: span(0.05, 0.45) = (0.25, 0.45)
    """Light-cone radius cT: the emitter switched on a time T ago at the cone's apex, fraction of the
    domain (≤ 0.45 keeps the cone inside one periodic image)."""
    wavelength: span(0.01, 0.2) = (0.03, 0.08)
    """Rest-frame emission wavelength λ0 = c/f0, fraction of the domain. Log-uniform."""


class Emitter(NamedTuple):
    """The light-cone emitter of each sample, every field [B] float64 in domain units (c = 1): the apex where
    it was switched on, its direction of motion (radians), speed β = v/c, the time T since switch-on (the
    cone's radius cT) and its rest-frame wavelength λ0."""

    apex_y: torch.Tensor
    apex_x: torch.Tensor
    angle: torch.Tensor
    beta: torch.Tensor
    duration: torch.Tensor
    wavelength: torch.Tensor


def light_cone_emitter(p: LightConeParams, rng: BatchRandom) -> Emitter:
    """The emitter of each sample (every draw :func:`light_cone_raw` makes)."""
    cy, cx = rng.uniform64(), rng.uniform64()
    angle = rng.uniform64() * TWO_PI
    beta = draw(rng, p.speed)
    t_obs = draw(rng, p.radius)
    lam = draw(rng, p.wavelength, log=True)
    return Emitter(cy, cx, angle, beta, t_obs, lam)


@register(
    "light_cone",
    tier=2,
    params=LightConeParams,
    description="Waves of a moving emitter inside its light cone: causal support, relativistic Doppler.",
    channels="snapshots of one emitter at times T(1 - c/2C)",
)
def light_cone_raw(
    p: LightConeParams, rng: BatchRandom, channels: int, grid: int, device: torch.device
) -> torch.Tensor:
    """Field of a uniformly moving emitter (:func:`light_cone_emitter`), evaluated at its retarded time;
    zero outside the cone.

    For a cell at displacement d from the apex, the retarded emission time t solves
    ``(T - t)² = |d - v t|²``; the emitter's proper time there is ``t/γ``, so the field is
    ``sin(2π t / (γ λ0)) / sqrt(1 + (T - t)/λ0)`` for ``t ≥ 0`` and exactly 0 otherwise. Along the
    motion the wavelength is ``γ λ0 (1 - β)`` ahead and ``γ λ0 (1 + β)`` behind (relativistic Doppler).
    Channel c is the snapshot at ``T_c = T (1 - c / 2C)`` (the same emitter, earlier). Returns [B, C, H, W].
    """
    cy, cx, angle, beta, t_obs, lam = light_cone_emitter(p, rng)
    dy, dx = offsets(cy, cx, grid)  # [B, H, 1], [B, 1, W]
    vy, vx = (beta * torch.sin(angle))[:, None, None], (beta * torch.cos(angle))[:, None, None]
    d2 = dy**2 + dx**2
    dv = dy * vy + dx * vx
    b2 = (beta**2)[:, None, None]
    gamma = 1.0 / torch.sqrt(1.0 - beta**2)
    frac = 1.0 - torch.arange(channels, device=device, dtype=torch.float64) / (2 * channels)
    out = []
    for c in range(channels):
        t = (t_obs * frac[c])[:, None, None]
        h = t - dv
        disc = (h**2 - (1 - b2) * (t**2 - d2)).clamp_min(0.0)
        tr = (t**2 - d2) / (h + torch.sqrt(disc))  # smaller root, written without cancellation
        wave = torch.sin(TWO_PI * tr / (gamma * lam)[:, None, None])
        amp = 1.0 / torch.sqrt(1.0 + (t - tr) / lam[:, None, None])
        out.append(torch.where(tr >= 0, wave * amp, torch.zeros_like(wave)))
    return torch.stack(out, dim=1).float()


# --------------------------------------------------------------------------------------------------
class CriticalParams(ICParams):
    correlation_length: span(0.005, 1.0) = (0.02, 0.2)
    """Correlation length ξ, fraction of the domain (log-uniform per sample and channel)."""
    eta: float = Field(0.0, ge=0.0, le=0.5)
    """Fisher exponent η: P(q) ∝ (q² + ξ⁻²)^-(1-η/2); η = 0 is Ornstein–Zernike, 1/4 the 2D Ising value."""


def oz_amplitude(grid: int, xi: torch.Tensor, eta: float, device: torch.device) -> torch.Tensor:
    """sqrt(P(q)) for the Ornstein–Zernike spectrum, q = 2πk; xi [...] → [..., H, W//2+1], 0 at k = 0."""
    k = wavenumbers(grid, device)
    q2 = (TWO_PI * k) ** 2
    power = (q2 + xi.double()[..., None, None] ** -2) ** (-(1.0 - eta / 2.0))
    return torch.where(k > 0, torch.sqrt(power), torch.zeros_like(power))


@register(
    "critical_fluctuation",
    tier=2,
    params=CriticalParams,
    description="Gaussian order-parameter fluctuations near criticality: Ornstein–Zernike spectrum.",
)
def critical_fluctuation_raw(
    p: CriticalParams, rng: BatchRandom, channels: int, grid: int, device: torch.device
) -> torch.Tensor:
    xi = draw(rng, p.correlation_length, channels, log=True)
    white = white_noise(rng, channels, grid, grid)
    return filtered_noise(white, oz_amplitude(grid, xi, p.eta, device))


# --------------------------------------------------------------------------------------------------
class PhaseBoundaryParams(ICParams):
    epsilon: span(0.002, 0.05) = (0.005, 0.015)
    """Allen–Cahn interface parameter ε: the profile is tanh(d / (√2 ε)), fraction of the domain. Log-uniform."""
    domain_scale: span(0.02, 0.3) = (0.05, 0.15)
    """Smoothing length of the random field whose level set places the boundaries. Log-uniform."""
    fraction: span(0.1, 0.9) = (0.3, 0.7)
    """Area fraction of the +1 phase."""


@register(
    "phase_boundary",
    tier=2,
    params=PhaseBoundaryParams,
    description="Coarsening two-phase domains separated by equilibrium Allen–Cahn tanh interfaces.",
)
def phase_boundary_raw(
    p: PhaseBoundaryParams, rng: BatchRandom, channels: int, grid: int, device: torch.device
) -> torch.Tensor:
    """Two-phase field ±1 with equilibrium Allen–Cahn interfaces tanh(d/(√2 ε)); [B, C, H, W].

    d ≈ (g - g*)/|∇g| is the signed distance to the level set g = g* of a smooth field (exact to first
    order at the interface, where the profile is measured).
    """
    eps = draw(rng, p.epsilon, channels, log=True)
    scale = draw(rng, p.domain_scale, channels, log=True)
    frac = draw(rng, p.fraction, channels)
    g = smooth_random_field(rng, (channels,), grid, scale, p.domain_scale[0]).double()
    g = g - quantile_rows(g, 1.0 - frac)
    gy, gx = spectral_gradient(g)
    grad = torch.sqrt(gy**2 + gx**2)
    floor = 1e-3 * grad.mean(dim=(-2, -1), keepdim=True)
    return tanh_profile(g / grad.clamp_min(floor), math.sqrt(2.0) * eps).float()


# --------------------------------------------------------------------------------------------------
class BZParams(ICParams):
    modes: choices(Literal["spiral", "target", "turbulent"]) = ["spiral", "target", "turbulent"]
    """Wave regimes; each sample picks one uniformly."""
    wavelength: span(0.02, 0.3) = (0.06, 0.15)
    """Wave spacing λ away from the cores, fraction of the domain. Log-uniform."""
    arms: ispan(1, 3) = (1, 2)
    """Spiral: arms per core (topological charge ±m)."""
    pairs: ispan(1, 4) = (1, 2)
    """Spiral: number of counter-rotating spiral pairs (the torus needs zero net charge)."""
    pacemakers: ispan(1, 6) = (1, 3)
    """Target: number of pacemaker centres."""
    defects: ispan(2, 16) = (4, 10)
    """Turbulent: number of ±1 defect pairs (plus a smooth random phase)."""
    sharpness: span(0.0, 10.0) = (0.5, 2.0)
    """Excitable waveform κ: the field is (exp(κ(cos Φ - 1)) - 1)/κ (0 = cos Φ - 1; large = thin pulses)."""


_NOME_TERMS = 5  # θ1 series terms; q^((n+1/2)²) with q = e^-π makes the 6th term < 1e-30 relative


def _theta1_parts(u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Jacobi θ1(π(u + iv) | τ = i) as separable factors: ``(re, im)`` each [..., H, W] from
    ``u`` [..., 1, W] and ``v`` [..., H, 1] (sin(a+ib) = sin a cosh b + i cos a sinh b)."""
    n = torch.arange(_NOME_TERMS, device=u.device, dtype=torch.float64)
    coef = 2.0 * (-1.0) ** n * torch.exp(-math.pi * (n + 0.5) ** 2)
    a = math.pi * (2 * n + 1) * u[..., None]  # [..., 1, W, N]
    b = math.pi * (2 * n + 1) * v[..., None]  # [..., H, 1, N]
    sa, ca = torch.sin(a)[..., 0, :, :], torch.cos(a)[..., 0, :, :]  # [..., W, N]
    chb, shb = torch.cosh(b)[..., 0, :] * coef, torch.sinh(b)[..., 0, :] * coef  # [..., H, N]
    return chb @ sa.transpose(-1, -2), shb @ ca.transpose(-1, -2)


def vortex_phase(
    cy: torch.Tensor, cx: torch.Tensor, charge: torch.Tensor, y: torch.Tensor, x: torch.Tensor
) -> torch.Tensor:
    """Periodic phase field of point vortices on the unit torus: [B, H, W] float64.

    ``cy, cx`` [B, N] positions, ``charge`` [B, N] integers with zero sum per sample (required on a
    torus); ``y`` [H, 1], ``x`` [1, W] evaluation points (any reals, e.g. :func:`coords`).
    Φ = Σ_j s_j arg θ1(π(z - c_j)) - 2π (Σ_j s_j cx_j) y winds by s_j around c_j and is single-valued
    mod 2π on the torus: the linear term cancels θ1's quasi-periodicity θ1(u + πτ) = -q⁻¹e^{-2iu}θ1(u).
    """
    phi = torch.zeros(cy.shape[0], y.shape[0], x.shape[1], dtype=torch.float64, device=cy.device)
    for j in range(cy.shape[1]):
        re, im = _theta1_parts(x[None] - cx[:, j, None, None], y[None] - cy[:, j, None, None])
        phi = phi + charge[:, j, None, None] * torch.atan2(im, re)
    return phi - TWO_PI * (charge * cx).sum(1)[:, None, None] * y[None]


def bz_phase(p: BZParams, rng: BatchRandom, grid: int, device: torch.device) -> torch.Tensor:
    """Wave phase Φ [B, H, W] float64 (the field is a waveform of Φ)."""
    n_pairs = max(p.pairs[1], p.defects[1])
    n_pace = p.pacemakers[1]
    kind = draw_choice(rng, p.modes)
    lam = draw(rng, p.wavelength, log=True)
    arms = draw_int(rng, p.arms)
    pairs = draw_int(rng, p.pairs)
    defects = draw_int(rng, p.defects)
    pace = draw_int(rng, p.pacemakers)
    vy, vx = rng.uniform64(2 * n_pairs), rng.uniform64(2 * n_pairs)
    py, px = rng.uniform64(n_pace), rng.uniform64(n_pace)
    offset = rng.uniform64() * TWO_PI
    turb = smooth_random_field(rng, (), grid, torch.full((rng.batch,), 0.1, device=device), 0.1)

    names = ["spiral", "target", "turbulent"]
    mode = torch.tensor([names.index(n) for n in p.modes], device=device)[kind]  # [B]
    active_pairs = torch.where(mode == 0, pairs, torch.where(mode == 2, defects, torch.zeros_like(pairs)))
    m = torch.where(mode == 0, arms, torch.ones_like(arms))
    idx = torch.arange(n_pairs, device=device)
    on = idx[None] < active_pairs[:, None]  # [B, P]
    sign = torch.cat([torch.ones(n_pairs, device=device), -torch.ones(n_pairs, device=device)])
    charge = (torch.cat([on, on], dim=1) * sign * m[:, None]).double()  # [B, 2P], zero sum
    theta = vortex_phase(vy, vx, charge, *coords(grid, device))

    # distance to the nearest core (spiral/turbulent: vortices; target: pacemakers)
    big = torch.full((rng.batch, grid, grid), 4.0, dtype=torch.float64, device=device)
    rho2 = big.clone()
    for j in range(2 * n_pairs):
        d2 = sq_distance(vy[:, j], vx[:, j], grid)
        rho2 = torch.where(charge[:, j, None, None] != 0, torch.minimum(rho2, d2), rho2)
    pace_rho2 = big.clone()
    for j in range(n_pace):
        d2 = sq_distance(py[:, j], px[:, j], grid)
        pace_rho2 = torch.where((j < pace)[:, None, None], torch.minimum(pace_rho2, d2), pace_rho2)
    is_target = (mode == 1)[:, None, None]
    rho = torch.sqrt(torch.where(is_target, pace_rho2, rho2))
    phase = -TWO_PI * rho / lam[:, None, None] + offset[:, None, None]
    phase = phase + torch.where(is_target, torch.zeros_like(theta), theta)
    return phase + torch.where((mode == 2)[:, None, None], 1.5 * turb.double(), torch.zeros_like(theta))


@register(
    "bz_reaction",
    tier=2,
    params=BZParams,
    description="Belousov–Zhabotinsky-like excitable waves: spiral pairs, target rings or defect turbulence.",
    channels="the same wave pattern at successive phases Φ - 2πc/C (one period of its motion)",
)
def bz_reaction_raw(p: BZParams, rng: BatchRandom, channels: int, grid: int, device: torch.device) -> torch.Tensor:
    """Excitable waveform of the phase advanced by 2πc/C per channel: [B, C, H, W]."""
    phi = bz_phase(p, rng, grid, device)
    kappa = draw(rng, p.sharpness)[:, None, None, None]
    steps = TWO_PI * torch.arange(channels, device=device, dtype=torch.float64) / channels
    cos = torch.cos(phi[:, None] - steps[None, :, None, None])
    pulse = torch.expm1(kappa * (cos - 1.0)) / kappa.clamp_min(1e-12)
    return torch.where(kappa > 0, pulse, cos - 1.0).float()


# --------------------------------------------------------------------------------------------------
class EntropyParams(ICParams):
    levels: int = Field(8, ge=2, le=64)
    """Size K of the symbol alphabet (values evenly spaced in [-1, 1])."""
    entropy: span(0.0, 1.0) = (0.0, 1.0)
    """Range of the local entropy map, as a fraction of log2(K) bits; every sample spans it."""
    map_scale: span(0.02, 0.5) = (0.1, 0.3)
    """Smoothing length of the entropy map, fraction of the domain. Log-uniform."""
    pattern_scale: span(0.005, 0.3) = (0.03, 0.1)
    """Smoothing length of the preferred-symbol pattern seen where the entropy is low. Log-uniform."""


def _entropy_bits(eps: torch.Tensor, levels: int) -> torch.Tensor:
    """H(ε) in bits of 'preferred symbol w.p. 1-ε, else uniform over the other K-1'."""
    e = eps.clamp(1e-15, 1 - 1e-15)
    h = -(e * torch.log2(e) + (1 - e) * torch.log2(1 - e))
    return torch.where(eps <= 0, torch.zeros_like(h), h + eps * math.log2(levels - 1) if levels > 2 else h)


def _invert_entropy(target_bits: torch.Tensor, levels: int) -> torch.Tensor:
    """ε with H(ε) = target (H increases on [0, (K-1)/K] from 0 to log2 K): a table of ε on a uniform grid
    of H (built once by bisection-free search on a fine ε grid), linearly interpolated per cell."""
    dev = target_bits.device
    fine_eps = torch.linspace(0.0, (levels - 1) / levels, 1 << 14, dtype=torch.float64, device=dev)
    fine_h = _entropy_bits(fine_eps, levels)
    h_max = float(fine_h[-1])
    h_grid = torch.linspace(0.0, h_max, 4097, dtype=torch.float64, device=dev)
    i = torch.searchsorted(fine_h, h_grid).clamp(1, fine_h.numel() - 1)
    w = (h_grid - fine_h[i - 1]) / (fine_h[i] - fine_h[i - 1]).clamp_min(1e-300)
    table = fine_eps[i - 1] + w.clamp(0, 1) * (fine_eps[i] - fine_eps[i - 1])
    pos = target_bits.clamp(0.0, h_max) * (4096 / h_max)
    j = pos.floor().long().clamp(0, 4095)
    return torch.lerp(table[j], table[j + 1], pos - j)


def entropy_maps(p: EntropyParams, rng: BatchRandom, channels: int, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The two smooth maps behind :func:`shannon_entropy_raw` (its first draws): the target local entropy
    H(r) [B, C, H, W] float64 in bits, uniform over the configured range, and the preferred symbol
    [B, C, H, W] int64 in 0..K-1 (a quantised smooth pattern)."""
    k = p.levels
    lo, hi = (v * math.log2(k) for v in p.entropy)
    map_scale = draw(rng, p.map_scale, channels, log=True)
    pat_scale = draw(rng, p.pattern_scale, channels, log=True)
    g_map = smooth_random_field(rng, (channels,), grid, map_scale, p.map_scale[0]).double()
    g_pat = smooth_random_field(rng, (channels,), grid, pat_scale, p.pattern_scale[0]).double()
    normal_cdf = 0.5 * (1.0 + torch.erf(g_map / math.sqrt(2.0)))
    target = lo + (hi - lo) * normal_cdf
    pref = torch.floor(0.5 * (1.0 + torch.erf(g_pat / math.sqrt(2.0))) * k).long().clamp(0, k - 1)
    return target, pref


@register(
    "shannon_entropy",
    tier=2,
    params=EntropyParams,
    description="Symbol field whose local Shannon entropy follows a smooth random map (ordered ↔ random).",
)
def shannon_entropy_raw(
    p: EntropyParams, rng: BatchRandom, channels: int, grid: int, device: torch.device
) -> torch.Tensor:
    """Symbols whose local distribution has a prescribed entropy map H(r) (bits).

    At each cell the preferred symbol is kept with probability 1 - ε(r), otherwise one of the other K - 1
    symbols is drawn uniformly; ε(r) solves H(ε) = H(r) (both maps from :func:`entropy_maps`). Returns
    [B, C, H, W]: symbol s as the level -1 + 2s/(K-1) in [-1, 1].
    """
    k = p.levels
    target, pref = entropy_maps(p, rng, channels, grid)
    u = rng.uniform64(channels, grid, grid) * float(1 << 26)  # one draw → two uniforms (26 + 27 bits)
    u_keep = (torch.floor(u) + 0.5) / float(1 << 26)
    u_other = u - torch.floor(u)
    eps = _invert_entropy(target, k)
    other = (pref + 1 + torch.floor(u_other * (k - 1)).long().clamp(0, k - 2)) % k
    sym = torch.where(u_keep < eps, other, pref)
    return (-1.0 + 2.0 * sym.double() / (k - 1)).float()

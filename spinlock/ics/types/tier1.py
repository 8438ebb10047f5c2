"""Tier 1 — foundational IC types: wave packets, Turing patterns, gradients and fronts.

Each type registers its unstandardised core ``*_raw`` [B, C, H, W] (what the property tests measure);
:func:`spinlock.ics.generate_ic` standardises it.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from spinlock.ics.base import register
from spinlock.ics.geometry import (
    PHASE_CHANNELS,
    distance,
    gaussian_envelope,
    integer_wavevector,
    lattice_coordinate,
    offsets,
    phase_projections,
    plane_phase,
    random_lattice_direction,
    tanh_profile,
)
from spinlock.ics.noise import lowpass_noise, smooth_random_field, unit_variance
from spinlock.ics.params import ICParams, choices, draw, draw_choice, draw_int, ispan, span
from spinlock.ics.spectral import TWO_PI
from spinlock.rng import BatchRandom


# --------------------------------------------------------------------------------------------------
class WavePacketParams(ICParams):
    packets: ispan(1, 8) = (1, 3)
    """Number of superposed packets."""
    wavenumber: span(1.0, 64.0) = (4.0, 16.0)
    """Carrier |k0|, cycles per domain (rounded to an integer wavevector, so ψ is periodic)."""
    width: span(0.01, 0.15) = (0.04, 0.1)
    """Envelope std σ of |ψ|² along its major axis, fraction of the domain. Log-uniform."""
    aspect: span(0.2, 1.0) = (0.5, 1.0)
    """Minor/major std ratio of the envelope (1 = round; < 1 = squeezed)."""


def wave_packet_psi(p: WavePacketParams, rng: BatchRandom, grid: int, device: torch.device) -> torch.Tensor:
    """Complex ψ [B, H, W] (complex128): Σ_j a_j · envelope_j · exp(i(2π k_j·r + φ_j))."""
    n = p.packets[1]
    count = draw_int(rng, p.packets)
    cy, cx = rng.uniform64(n), rng.uniform64(n)
    k = draw(rng, p.wavenumber, n)
    k_angle = rng.uniform64(n) * TWO_PI
    sigma = draw(rng, p.width, n, log=True)
    aspect = draw(rng, p.aspect, n)
    env_angle = rng.uniform64(n) * math.pi
    mag = 0.5 + 0.5 * rng.uniform64(n)
    phase = rng.uniform64(n) * TWO_PI
    ky, kx = integer_wavevector(k, k_angle, grid / 2 - 1)
    psi = torch.zeros(rng.batch, grid, grid, dtype=torch.complex128, device=device)
    for j in range(n):  # a few packets; a loop keeps memory at [B, H, W]
        dy, dx = offsets(cy[:, j], cx[:, j], grid)
        env = gaussian_envelope(dy, dx, env_angle[:, j], sigma[:, j], sigma[:, j] * aspect[:, j])
        carrier = torch.exp(1j * (plane_phase(ky[:, j], kx[:, j], grid) + phase[:, j, None, None]))
        psi = psi + (mag[:, j] * (j < count))[:, None, None] * env * carrier
    return psi


@register(
    "quantum_wave_packet",
    tier=1,
    params=WavePacketParams,
    description="Superposed (possibly squeezed) Gaussian wave packets with integer carrier wavevectors.",
    channels=PHASE_CHANNELS,
)
def quantum_wave_packet_raw(
    p: WavePacketParams, rng: BatchRandom, channels: int, grid: int, device: torch.device
) -> torch.Tensor:
    return phase_projections(wave_packet_psi(p, rng, grid, device), channels)


# --------------------------------------------------------------------------------------------------
class TuringParams(ICParams):
    patterns: choices(Literal["spots", "stripes", "labyrinth"]) = ["spots", "stripes", "labyrinth"]
    """Pattern kinds; each sample and channel picks one uniformly."""
    wavelength: span(0.02, 0.5) = (0.08, 0.2)
    """Intrinsic wavelength λ = 1/k_c, fraction of the domain (the spectral peak sits at k_c). Log-uniform."""
    sharpness: span(0.0, 20.0) = (1.0, 4.0)
    """Saturation gain s: the unit-variance linear pattern u becomes tanh(s·u)/s (0 = linear)."""
    undulation: span(0.0, 3.0) = (0.0, 1.0)
    """Phase modulation of stripes, radians (smooth noise on the scale 2λ bends the stripes)."""


@register(
    "turing_pattern",
    tier=1,
    params=TuringParams,
    description="Saturated Turing patterns (hexagonal spots, wavy stripes, labyrinths) at wavelength λ.",
)
def turing_pattern_raw(
    p: TuringParams, rng: BatchRandom, channels: int, grid: int, device: torch.device
) -> torch.Tensor:
    c = channels
    kind = draw_choice(rng, p.patterns, c)
    lam = draw(rng, p.wavelength, c, log=True)
    sharp = draw(rng, p.sharpness, c)
    und = draw(rng, p.undulation, c)
    angle = rng.uniform64(c) * TWO_PI
    phases = rng.uniform64(c, 3) * TWO_PI
    bend = smooth_random_field(rng, (c,), grid, 2.0 * lam, 2.0 * p.wavelength[0])
    kc = (1.0 / lam).clamp(max=grid / 2 - 1)
    ring_k = kc.float()[..., None, None]
    labyrinth = lowpass_noise(  # narrow-band noise: the annulus |k - k_c| <= 1/2
        rng, (c,), grid, min(1.0 / p.wavelength[0] + 1.0, grid / 2), lambda k: ((k - ring_k).abs() <= 0.5).float()
    )
    # spots: a resonant triad k1 + k2 + k3 = 0 with phases summing to 0 → hexagonal maxima
    k1y, k1x = integer_wavevector(kc, angle, grid / 2 - 1)
    k2y, k2x = integer_wavevector(kc, angle + TWO_PI / 3, grid / 2 - 1)
    ph1, ph2 = phases[..., 0], phases[..., 1]
    spots = (
        torch.cos(plane_phase(k1y, k1x, grid) + ph1[..., None, None])
        + torch.cos(plane_phase(k2y, k2x, grid) + ph2[..., None, None])
        + torch.cos(plane_phase(-k1y - k2y, -k1x - k2x, grid) - (ph1 + ph2)[..., None, None])
    )
    stripes = torch.cos(plane_phase(k1y, k1x, grid) + phases[..., 2, None, None] + und[..., None, None] * bend)

    names = ["spots", "stripes", "labyrinth"]
    stack = torch.stack([unit_variance(spots), unit_variance(stripes), unit_variance(labyrinth)], dim=2)
    table = torch.tensor([names.index(n) for n in p.patterns], device=device)
    u = stack.gather(2, table[kind][:, :, None, None, None].expand(-1, -1, 1, grid, grid))[:, :, 0]
    s = sharp.float()[..., None, None]
    return torch.where(s > 0, torch.tanh(s * u) / s.clamp_min(1e-6), u)


# --------------------------------------------------------------------------------------------------
class ThermalParams(ICParams):
    max_lattice: int = Field(1, ge=1, le=4)
    """Gradient direction: a lattice direction (ny, nx) with max(|ny|, |nx|) ≤ this (1: axes and
    diagonals); the profile repeats every 1/|n| across it."""
    fluctuation: span(0.0, 2.0) = (0.05, 0.3)
    """Thermal fluctuation rms relative to the rms of the ramp."""
    fluctuation_scale: span(0.005, 0.1) = (0.01, 0.03)
    """Correlation (blur) length of the fluctuations, fraction of the domain. Log-uniform."""


@register(
    "thermal_gradient",
    tier=1,
    params=ThermalParams,
    description="Linear temperature ramp between periodic hot and cold lines plus small thermal noise.",
)
def thermal_gradient_raw(
    p: ThermalParams, rng: BatchRandom, channels: int, grid: int, device: torch.device
) -> torch.Tensor:
    """Periodic linear ramp T = 1 - 4|s| between a hot line (s=0) and a cold line (s=±1/2), plus
    small-scale Gaussian fluctuations; [B, C, H, W]."""
    ny, nx = random_lattice_direction(rng, p.max_lattice, channels)
    offset = rng.uniform64(channels)
    fl = draw(rng, p.fluctuation, channels)
    scale = draw(rng, p.fluctuation_scale, channels, log=True)
    noise = smooth_random_field(rng, (channels,), grid, scale, p.fluctuation_scale[0])
    ramp = 1.0 - 4.0 * lattice_coordinate(ny, nx, offset, grid).abs()
    return (ramp + fl[..., None, None] / math.sqrt(3.0) * noise).float()


# --------------------------------------------------------------------------------------------------
class MorphogenParams(ICParams):
    sources: choices(Literal["point", "line"]) = ["point", "line"]
    """Source shapes; each sample and channel picks one uniformly."""
    decay_length: span(0.01, 0.5) = (0.05, 0.2)
    """Decay length λ of c = exp(-d/λ) (d: distance to the source), fraction of the domain. Log-uniform."""
    noise: span(0.0, 1.0) = (0.0, 0.2)
    """Std of multiplicative log-normal noise on the concentration (0 = clean profile)."""
    noise_scale: span(0.005, 0.1) = (0.01, 0.03)
    """Correlation length of that noise, fraction of the domain. Log-uniform."""


def morphogen_distance(
    p: MorphogenParams, rng: BatchRandom, channels: int, grid: int, device: torch.device
) -> torch.Tensor:
    """Distance d [B, C, H, W] float64 from every cell to its channel's source, a point or a lattice line
    (the first draws of :func:`morphogen_gradient_raw`)."""
    c = channels
    kind = draw_choice(rng, p.sources, c)
    cy, cx = rng.uniform64(c), rng.uniform64(c)
    ny, nx = random_lattice_direction(rng, 1, c)
    names = ["point", "line"]
    is_line = torch.tensor([names.index(n) for n in p.sources], device=device)[kind] == 1
    d_point = distance(cy, cx, grid)
    d_line = lattice_coordinate(ny, nx, cx, grid).abs() / torch.sqrt(ny**2 + nx**2)[..., None, None]
    return torch.where(is_line[..., None, None], d_line, d_point)


@register(
    "morphogen_gradient",
    tier=1,
    params=MorphogenParams,
    description="Exponentially decaying morphogen concentration from a point or line source.",
    channels="independent morphogens (own source, decay length and noise) per channel",
)
def morphogen_gradient_raw(
    p: MorphogenParams, rng: BatchRandom, channels: int, grid: int, device: torch.device
) -> torch.Tensor:
    """Concentration exp(-d/λ)·exp(σn - σ²/2) [B, C, H, W], d from :func:`morphogen_distance`."""
    c = channels
    d = morphogen_distance(p, rng, c, grid, device)
    lam = draw(rng, p.decay_length, c, log=True)
    sig = draw(rng, p.noise, c)
    scale = draw(rng, p.noise_scale, c, log=True)
    noise = smooth_random_field(rng, (c,), grid, scale, p.noise_scale[0])
    s = sig[..., None, None]
    return (torch.exp(-d / lam[..., None, None]) * torch.exp(s * noise - s**2 / 2)).float()


# --------------------------------------------------------------------------------------------------
class ReactionFrontParams(ICParams):
    geometries: choices(Literal["planar", "circular", "irregular"]) = ["planar", "circular", "irregular"]
    """Front shapes; each sample and channel picks one uniformly."""
    width: span(0.003, 0.1) = (0.01, 0.03)
    """Front width w: u = tanh(φ/w) with φ the signed distance to the front, fraction of the domain. Log-uniform."""
    radius: span(0.05, 0.4) = (0.1, 0.3)
    """Mean radius of circular and irregular fronts, fraction of the domain."""
    band: span(0.1, 0.9) = (0.3, 0.7)
    """Planar: thickness of the reacted band as a fraction of the spacing between bands."""
    roughness: span(0.0, 0.5) = (0.1, 0.3)
    """Irregular: relative amplitude of the radius modulation R(θ) = R0(1 + Σ_m a_m cos(mθ+φ_m))."""


@register(
    "reaction_front",
    tier=1,
    params=ReactionFrontParams,
    description="A reacted region bounded by a tanh front of width w: planar band, circle or rough blob.",
)
def reaction_front_raw(
    p: ReactionFrontParams, rng: BatchRandom, channels: int, grid: int, device: torch.device
) -> torch.Tensor:
    """u = tanh(φ/w) in (-1, 1), +1 reacted; [B, C, H, W]."""
    c, modes = channels, 5
    kind = draw_choice(rng, p.geometries, c)
    w = draw(rng, p.width, c, log=True)
    cy, cx = rng.uniform64(c), rng.uniform64(c)
    r0 = draw(rng, p.radius, c)
    band = draw(rng, p.band, c)
    rough = draw(rng, p.roughness, c)
    ny, nx = random_lattice_direction(rng, 1, c)
    a = rng.uniform64(c, modes)
    a = a / a.sum(-1, keepdim=True) * rough[..., None]
    mphase = rng.uniform64(c, modes) * TWO_PI

    s = lattice_coordinate(ny, nx, cx, grid)
    phi_planar = (band[..., None, None] / 2 - s.abs()) / torch.sqrt(ny**2 + nx**2)[..., None, None]
    dy, dx = offsets(cy, cx, grid)
    d = torch.sqrt(dy**2 + dx**2)
    phi_circ = r0[..., None, None] - d
    theta = torch.atan2(dy, dx)
    r_theta = r0[..., None, None].expand_as(d).clone()
    dr_theta = torch.zeros_like(d)
    for j in range(modes):  # angular modes m = 2..6; a loop keeps memory at [B, C, H, W]
        m = j + 2
        arg = m * theta + mphase[..., j, None, None]
        amp = (r0 * a[..., j])[..., None, None]
        r_theta += amp * torch.cos(arg)
        dr_theta -= amp * m * torch.sin(arg)
    # normalise by |∇φ| = sqrt(1 + (R'(θ)/d)²) so φ is a signed distance near the front (d ≥ R0/2 there;
    # bounding d below keeps the centre, where θ is singular, deep inside the reacted region)
    d_front = torch.maximum(d, r0[..., None, None] / 2)
    phi_irr = (r_theta - d) / torch.sqrt(1 + (dr_theta / d_front) ** 2)
    names = ["planar", "circular", "irregular"]
    table = torch.tensor([names.index(n) for n in p.geometries], device=device)[kind][..., None, None]
    phi = torch.where(table == 0, phi_planar, torch.where(table == 1, phi_circ, phi_irr))
    return tanh_profile(phi, w).float()

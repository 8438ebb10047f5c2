"""Tier 0 — baseline IC types: random fields and simple geometric patterns.

Each type registers its unstandardised core ``*_raw`` [B, C, H, W] (what the property tests measure);
:func:`spinlock.ics.generate_ic` standardises it.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from spinlock.ics.base import register, standardize
from spinlock.ics.geometry import coords, integer_wavevector, plane_phase, sq_distance, wrap
from spinlock.ics.noise import quantile_rows, smooth_random_field, white_noise
from spinlock.ics.params import ICParams, choices, draw, draw_choice, draw_int, ispan, span
from spinlock.ics.spectral import TWO_PI, filtered_noise, power_law_amplitude, rfft_weights, wavevectors
from spinlock.rng import BatchRandom


# --------------------------------------------------------------------------------------------------
class GRFParams(ICParams):
    beta: float = Field(3.0, ge=0.0, le=8.0)
    """Spectral slope: isotropic power spectrum P(k) ∝ |k|^-beta (k in cycles per domain)."""


@register(
    "gaussian_random_field",
    tier=0,
    params=GRFParams,
    description="Stationary Gaussian random field with power spectrum P(k) ∝ k^-beta.",
)
def gaussian_random_field_raw(
    p: GRFParams, rng: BatchRandom, channels: int, grid: int, device: torch.device
) -> torch.Tensor:
    white = white_noise(rng, channels, grid, grid)
    return filtered_noise(white, power_law_amplitude(grid, p.beta, device))


# --------------------------------------------------------------------------------------------------
class StructuredParams(ICParams):
    patterns: choices(Literal["circles", "stripes", "blobs"]) = ["circles", "stripes", "blobs"]
    """Pattern kinds; each sample and channel picks one uniformly."""
    count: ispan(1, 64) = (3, 12)
    """Number of discs (circles)."""
    radius: span(0.01, 0.4) = (0.03, 0.12)
    """Disc radius (circles), fraction of the domain; drawn per disc."""
    wavelength: span(0.02, 1.0) = (0.05, 0.25)
    """Stripe period (stripes), fraction of the domain; the wavevector is rounded to an integer one. Log-uniform."""
    fill: span(0.05, 0.95) = (0.3, 0.7)
    """Area fraction of the 'on' phase (blobs)."""
    blob_scale: span(0.01, 0.3) = (0.03, 0.1)
    """Smoothing length of the noise whose level set bounds the blobs, fraction of the domain. Log-uniform."""


@register(
    "structured",
    tier=0,
    params=StructuredParams,
    description="Binary geometric patterns: unions of discs, square-wave stripes or level-set blobs.",
)
def structured_raw(
    p: StructuredParams, rng: BatchRandom, channels: int, grid: int, device: torch.device
) -> torch.Tensor:
    """Binary {0, 1} fields [B, C, H, W] (hard edges)."""
    c = channels
    kind = draw_choice(rng, p.patterns, c)
    n_max = p.count[1]
    count = draw_int(rng, p.count, c)
    cy, cx = rng.uniform64(c, n_max), rng.uniform64(c, n_max)
    rad = draw(rng, p.radius, c, n_max)
    lam = draw(rng, p.wavelength, c, log=True)
    angle = rng.uniform64(c) * TWO_PI
    phase = rng.uniform64(c) * TWO_PI
    fill = draw(rng, p.fill, c)
    scale = draw(rng, p.blob_scale, c, log=True)
    noise = smooth_random_field(rng, (c,), grid, scale, p.blob_scale[0])

    circles = torch.zeros(rng.batch, c, grid, grid, dtype=torch.bool, device=device)
    r2 = torch.where(torch.arange(n_max, device=device) < count[..., None], rad**2, -1.0).float()
    for j in range(n_max):  # union of discs, one disc per pass keeps memory at [B, C, H, W]
        circles |= sq_distance(cy[..., j], cx[..., j], grid, torch.float32) < r2[..., j, None, None]
    ky, kx = integer_wavevector(1.0 / lam, angle, grid / 2)
    stripes = torch.cos(plane_phase(ky, kx, grid) + phase[..., None, None]) >= 0
    blobs = noise > quantile_rows(noise, 1.0 - fill)
    out = torch.stack([circles, stripes, blobs], dim=2).float()  # [B, C, 3, H, W]
    names = ["circles", "stripes", "blobs"]
    table = torch.tensor([names.index(k) for k in p.patterns], device=device)
    return out.gather(2, table[kind][:, :, None, None, None].expand(-1, -1, 1, grid, grid))[:, :, 0]


# --------------------------------------------------------------------------------------------------
class MixedParams(ICParams):
    beta_smooth: span(0.0, 8.0) = (3.5, 4.5)
    """Spectral slope of the smooth texture."""
    beta_rough: span(0.0, 8.0) = (1.0, 2.0)
    """Spectral slope of the rough texture."""
    rough_fraction: span(0.05, 0.95) = (0.3, 0.7)
    """Area fraction of the rough region."""
    partition_scale: span(0.02, 0.5) = (0.08, 0.2)
    """Smoothing length of the noise whose level set separates the regions, fraction of the domain. Log-uniform."""


def mixed_layers(
    p: MixedParams, rng: BatchRandom, channels: int, grid: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The two textures and their partition: ``(smooth, rough)`` [B, C, H, W] standardised GRFs and the
    soft mask [B, 1, H, W] in [0, 1] (1 = rough) shared by all channels."""
    bs = draw(rng, p.beta_smooth, channels)
    br = draw(rng, p.beta_rough, channels)
    frac = draw(rng, p.rough_fraction)
    scale = draw(rng, p.partition_scale, log=True)
    w_smooth, w_rough = white_noise(rng, channels, grid, grid), white_noise(rng, channels, grid, grid)
    g = smooth_random_field(rng, (1,), grid, scale[:, None], p.partition_scale[0])
    smooth_f = standardize(filtered_noise(w_smooth, power_law_amplitude(grid, bs, device)))
    rough_f = standardize(filtered_noise(w_rough, power_law_amplitude(grid, br, device)))
    thr = quantile_rows(g, 1.0 - frac[:, None])
    mask = torch.sigmoid((g - thr) / 0.1)  # transition over ~0.1 std of g: a few cells wide
    return smooth_f, rough_f, mask


@register(
    "mixed",
    tier=0,
    params=MixedParams,
    description="Smooth and rough Gaussian textures side by side, split by a random soft partition.",
    channels="independent textures inside one partition shared by all channels",
)
def mixed_raw(p: MixedParams, rng: BatchRandom, channels: int, grid: int, device: torch.device) -> torch.Tensor:
    """Rough and smooth GRFs blended by the mask of :func:`mixed_layers`: [B, C, H, W]."""
    smooth_f, rough_f, mask = mixed_layers(p, rng, channels, grid, device)
    return mask * rough_f + (1.0 - mask) * smooth_f


# --------------------------------------------------------------------------------------------------
class MultiscaleParams(ICParams):
    octaves: int = Field(4, ge=2, le=8)
    """Number of octave bands; band j holds |k| in [k0 2^j / √2, k0 2^j √2) (clipped at Nyquist)."""
    base_wavenumber: span(1.0, 16.0) = (1.0, 2.0)
    """Centre k0 of the lowest band, cycles per domain (log-uniform per sample)."""
    decay: span(0.01, 1.0) = (0.3, 0.7)
    """Variance ratio between successive octaves (band j carries decay^j of band 0's variance)."""


def band_index(grid: int, k0: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Octave band of each rfft mode for base wavenumbers ``k0`` [B] → [B, 1, H, W//2+1] (−1 at k=0).

    Band j holds |k| in [k0·2^(j-½), k0·2^(j+½)). Modes sit exactly on these edges (|k|² = 8 for k0 = 2),
    and ``log2`` rounds differently on different CPUs' vector units, so the log is only a first guess:
    it is corrected with exact comparisons of the integer |k|² against k0²·2^(2j±1) (ldexp is exact).
    """
    ky, kx = wavevectors(grid, device)
    k2 = (ky**2 + kx**2)[None]  # exact integers in float64
    q = k0.to(torch.float64).view(-1, 1, 1) ** 2
    j = torch.floor(0.5 * torch.log2(k2.clamp_min(0.5) / q) + 0.5)
    edge = lambda e: torch.ldexp(q.expand(e.shape), e.to(torch.int64))  # noqa: E731  q·2^e, exact
    j = j - (k2 < edge(2 * j - 1)).to(j.dtype)
    j = j + (k2 >= edge(2 * j + 1)).to(j.dtype)
    return torch.where(k2 > 0, j, torch.full_like(j, -1)).long()[:, None]


@register(
    "multiscale_grf",
    tier=0,
    params=MultiscaleParams,
    description="Sum of octave-band Gaussian fields with a set variance ratio between octaves.",
)
def multiscale_grf_raw(
    p: MultiscaleParams, rng: BatchRandom, channels: int, grid: int, device: torch.device
) -> torch.Tensor:
    k0 = draw(rng, p.base_wavenumber, log=True)
    decay = draw(rng, p.decay)
    white = white_noise(rng, channels, grid, grid)
    spec = torch.fft.rfft2(white.double())
    band = band_index(grid, k0, device)
    power = spec.abs() ** 2 * rfft_weights(grid, device)
    gain = torch.zeros_like(power)
    for j in range(p.octaves):  # each band normalised to variance decay^j, so the ratios are exact
        m = band == j
        e = (power * m).sum(dim=(-2, -1), keepdim=True)
        target = decay[:, None, None, None] ** j
        gain = gain + m * torch.where(e > 0, torch.sqrt(target / e.clamp_min(1e-300)), torch.zeros_like(e))
    return torch.fft.irfft2(spec * gain, s=(grid, grid)).float()


# --------------------------------------------------------------------------------------------------
class LocalizedParams(ICParams):
    count: ispan(1, 32) = (1, 8)
    """Number of Gaussian blobs."""
    width: span(0.005, 0.15) = (0.02, 0.08)
    """Blob standard deviation σ, fraction of the domain; drawn per blob. Log-uniform."""
    signed: bool = True
    """Random sign per blob (False: all blobs positive)."""


@register(
    "localized",
    tier=0,
    params=LocalizedParams,
    description="A few isolated Gaussian blobs of random position, width and sign on a flat background.",
)
def localized_raw(p: LocalizedParams, rng: BatchRandom, channels: int, grid: int, device: torch.device) -> torch.Tensor:
    """Sum of periodic Gaussians a·exp(-|r-c|²/2σ²), |a| in [0.5, 1]; [B, C, H, W]."""
    n = p.count[1]
    count = draw_int(rng, p.count, channels)
    cy, cx = rng.uniform64(channels, n), rng.uniform64(channels, n)
    sigma = draw(rng, p.width, channels, n, log=True)
    amp = 0.5 + 0.5 * rng.uniform64(channels, n)
    sign = torch.where(rng.uniform64(channels, n) < 0.5, -1.0, 1.0) if p.signed else torch.ones_like(amp)
    active = torch.arange(n, device=device) < count[..., None]
    a = amp * sign * active
    y, x = coords(grid, device)
    gy = torch.exp(-(wrap(y[:, 0] - cy[..., None]) ** 2) / (2 * sigma[..., None] ** 2))  # [B, C, N, H]
    gx = torch.exp(-(wrap(x[0] - cx[..., None]) ** 2) / (2 * sigma[..., None] ** 2))  # [B, C, N, W]
    return torch.einsum("bcnh,bcnw->bchw", gy * a[..., None], gx).float()  # separable: one matmul


# --------------------------------------------------------------------------------------------------
class CompositeParams(ICParams):
    waves: ispan(1, 8) = (1, 4)
    """Number of plane waves in the deterministic pattern."""
    wavenumber: span(1.0, 64.0) = (3.0, 10.0)
    """Pattern wavenumber, cycles per domain (rounded to integer wavevectors, capped at Nyquist)."""
    snr: span(0.0, 100.0) = (0.5, 4.0)
    """Pattern-to-noise variance ratio."""
    noise_beta: span(0.0, 8.0) = (1.0, 3.0)
    """Spectral slope of the Gaussian noise."""


def composite_modes(
    p: CompositeParams, rng: BatchRandom, channels: int, grid: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pattern's plane waves (the first draws of :func:`composite_raw`): integer wavevectors
    ``(ky, kx)`` [B, C, N] float64 and ``active`` [B, C, N] bool (N = the span's maximum)."""
    n = p.waves[1]
    count = draw_int(rng, p.waves, channels)
    k = draw(rng, p.wavenumber, channels)
    angle = rng.uniform64(channels, n) * TWO_PI
    ky, kx = integer_wavevector(k[..., None].expand(-1, -1, n), angle, grid / 2 - 1)
    return ky, kx, torch.arange(n, device=device) < count[..., None]


@register(
    "composite",
    tier=0,
    params=CompositeParams,
    description="A plane-wave pattern plus power-law Gaussian noise at a set signal-to-noise ratio.",
)
def composite_raw(p: CompositeParams, rng: BatchRandom, channels: int, grid: int, device: torch.device) -> torch.Tensor:
    """sqrt(snr)·pattern + noise, both unit variance; [B, C, H, W] (modes from :func:`composite_modes`)."""
    ky, kx, active = composite_modes(p, rng, channels, grid, device)
    phase = rng.uniform64(channels, p.waves[1]) * TWO_PI
    snr = draw(rng, p.snr, channels)
    beta = draw(rng, p.noise_beta, channels)
    white = white_noise(rng, channels, grid, grid)
    # Σ_j cos(2π(ky y + kx x) + φ_j) = Re Σ_j Y_j(y) X_j(x): separable, so one batched matmul over j
    y, x = coords(grid, device)
    wy = torch.exp(1j * (TWO_PI * ky[..., None] * y[:, 0] + phase[..., None])) * active[..., None]  # [B, C, N, H]
    wx = torch.exp(1j * TWO_PI * kx[..., None] * x[0])  # [B, C, N, W]
    waves = torch.einsum("bcnh,bcnw->bchw", wy, wx).real
    pattern = standardize(waves)
    noise = standardize(filtered_noise(white, power_law_amplitude(grid, beta, device)))
    return (torch.sqrt(snr)[..., None, None] * pattern + noise).float()


# --------------------------------------------------------------------------------------------------
class HeavyTailedParams(ICParams):
    beta: float = Field(3.0, ge=0.0, le=6.0)
    """Spectral slope: P(k) ∝ k^-beta (the impulse train has a flat spectrum in expectation)."""
    tail_index: span(0.5, 4.0) = (1.2, 3.0)
    """Pareto index α of the impulse magnitudes (P(|a| > s) = s^-α, s ≥ 1); smaller is heavier."""
    density: span(1e-4, 1.0) = (0.005, 0.05)
    """Fraction of cells holding an impulse (one impulse is always present). Log-uniform."""


@register(
    "heavy_tailed",
    tier=0,
    params=HeavyTailedParams,
    description="Power-law spectrum field built from sparse Pareto impulses: intermittent, heavy-tailed.",
)
def heavy_tailed_raw(
    p: HeavyTailedParams, rng: BatchRandom, channels: int, grid: int, device: torch.device
) -> torch.Tensor:
    """Sparse Pareto impulses filtered by k^-β/2: power-law spectrum, heavy-tailed values."""
    alpha = draw(rng, p.tail_index, channels)
    dens = draw(rng, p.density, channels, log=True)
    u_site, u_mag, u_sign = (rng.uniform64(channels, grid, grid) for _ in range(3))
    anchor = rng.integers(0, grid * grid, channels)
    cell = torch.arange(grid * grid, device=device).reshape(grid, grid)
    present = (u_site < dens[..., None, None]) | (cell == anchor[..., None, None])
    mag = u_mag ** (-1.0 / alpha[..., None, None])
    impulses = torch.where(u_sign < 0.5, -mag, mag) * present
    return filtered_noise(impulses, power_law_amplitude(grid, p.beta, device))

"""Spectral helpers shared by IC generators (periodic grids, rfft layout).

Wavenumbers are in cycles per domain: mode ``(ky, kx)`` is ``exp(2πi (ky·y + kx·x))`` on the unit
torus, so ``|k| = 8`` means eight wavelengths across the domain.
"""

from __future__ import annotations

import math

import torch

TWO_PI = 2.0 * math.pi


def wavevectors(grid: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ky [H, 1], kx [1, W//2+1])`` float64, cycles per domain, on the rfft2 grid."""
    ky = torch.fft.fftfreq(grid, d=1.0 / grid, device=device, dtype=torch.float64)
    kx = torch.fft.rfftfreq(grid, d=1.0 / grid, device=device, dtype=torch.float64)
    return ky[:, None], kx[None, :]


def wavenumbers(grid: int, device: torch.device) -> torch.Tensor:
    """|k| in cycles per domain on the rfft2 grid, shape [H, W//2+1]."""
    ky, kx = wavevectors(grid, device)
    return torch.sqrt(ky**2 + kx**2)


def rfft_weights(grid: int, device: torch.device) -> torch.Tensor:
    """[1, W//2+1] multiplicity of each rfft column in the full spectrum (1 for DC/Nyquist, else 2)."""
    w = torch.full((grid // 2 + 1,), 2.0, dtype=torch.float64, device=device)
    w[0] = 1.0
    if grid % 2 == 0:
        w[-1] = 1.0
    return w[None, :]


def filtered_noise(white: torch.Tensor, amplitude: torch.Tensor) -> torch.Tensor:
    """Shape white noise [..., H, W] by a spectral amplitude [..., H, W//2+1] (periodic), float32."""
    spec = torch.fft.rfft2(white.double())
    return torch.fft.irfft2(spec * amplitude, s=white.shape[-2:]).float()


def power_law_amplitude(
    grid: int, beta: float | torch.Tensor, device: torch.device, k_min: float = 1.0
) -> torch.Tensor:
    """Amplitude sqrt(P(k)) for P(k) ∝ k^-beta, zero at k=0 (so the field has zero mean).

    ``beta`` is a float (→ [H, W//2+1]) or a tensor of any shape S (→ [*S, H, W//2+1]).
    """
    k = wavenumbers(grid, device)
    kk = torch.clamp(k, min=k_min)
    beta_t = torch.as_tensor(beta, dtype=torch.float64, device=device)
    amp = kk ** (-beta_t[..., None, None] / 2.0) if beta_t.ndim else kk ** (-float(beta) / 2.0)
    return torch.where(k > 0, amp, torch.zeros_like(amp))


def gaussian_amplitude(grid: int, sigma: torch.Tensor | float, device: torch.device) -> torch.Tensor:
    """Transfer function of a periodic Gaussian blur of std ``sigma`` (domain fractions).

    ``sigma`` float or tensor of shape S → [*S, H, W//2+1]; the Fourier transform of
    ``exp(-r²/2σ²)`` is ``exp(-2π²σ²|k|²)``.
    """
    k2 = wavenumbers(grid, device) ** 2
    s = torch.as_tensor(sigma, dtype=torch.float64, device=device)
    return torch.exp(-2.0 * math.pi**2 * s[..., None, None] ** 2 * k2)


def spectral_gradient(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(∂y x, ∂x x)`` of periodic ``x`` [..., H, W] in domain units (per unit length), float64.

    The Nyquist column/row derivative is zeroed (it is not representable for a real field).
    """
    grid = x.shape[-1]
    ky, kx = wavevectors(grid, x.device)
    if grid % 2 == 0:
        ky = torch.where(ky.abs() == grid // 2, torch.zeros_like(ky), ky)
        kx = torch.where(kx == grid // 2, torch.zeros_like(kx), kx)
    spec = torch.fft.rfft2(x.double())
    s = x.shape[-2:]
    dy = torch.fft.irfft2(spec * (1j * TWO_PI * ky), s=s)
    dx = torch.fft.irfft2(spec * (1j * TWO_PI * kx), s=s)
    return dy, dx


def radial_power_spectrum(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean power per Fourier mode in integer shells ``round(|k|) = 0, 1, ..., H//2``.

    ``x`` [..., H, W] → ``(k [K] float64, power [..., K] float64)`` with K = H//2 + 1. Shells are
    averaged over modes (counting the rfft's implicit conjugate half), so a field with spectrum
    P(k) returns P at each shell; empty shells are NaN.
    """
    grid = x.shape[-1]
    k = wavenumbers(grid, x.device)
    shell = torch.round(k).long()
    nk = grid // 2 + 1
    w = rfft_weights(grid, x.device).expand_as(k)
    keep = shell < nk
    spec = torch.fft.rfft2(x.double()).abs() ** 2 / float(grid) ** 4
    lead = spec.shape[:-2]
    flat = spec.reshape(-1, *k.shape)[:, keep] * w[keep]
    idx = shell[keep]
    power = torch.zeros(flat.shape[0], nk, dtype=torch.float64, device=x.device).index_add_(1, idx, flat)
    count = torch.zeros(nk, dtype=torch.float64, device=x.device).index_add_(0, idx, w[keep])
    power = power / count.where(count > 0, torch.full_like(count, float("nan")))
    return torch.arange(nk, dtype=torch.float64, device=x.device), power.reshape(*lead, nk)

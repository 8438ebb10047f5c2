"""Geometry on the periodic unit square shared by IC generators.

Cell ``(i, j)`` of a ``grid × grid`` field sits at ``(y, x) = (i / grid, j / grid)``; all lengths are
fractions of the domain side and displacements are wrapped to the nearest periodic image, so shapes
drawn near an edge continue on the opposite side.
"""

from __future__ import annotations

import math

import torch

from spinlock.ics.spectral import TWO_PI
from spinlock.rng import BatchRandom


def coords(grid: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y [H, 1], x [1, W])`` float64 cell positions in [0, 1)."""
    t = torch.arange(grid, dtype=torch.float64, device=device) / grid
    return t[:, None], t[None, :]


def wrap(d: torch.Tensor) -> torch.Tensor:
    """Displacement wrapped to the nearest periodic image, in [-1/2, 1/2)."""
    return torch.remainder(d + 0.5, 1.0) - 0.5


def offsets(cy: torch.Tensor, cx: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Wrapped displacement from centres ``cy, cx`` [...] to every cell, in separable form:
    ``(dy [..., H, 1], dx [..., 1, W])`` float64 (broadcast them to get [..., H, W])."""
    y, x = coords(grid, cy.device)
    return wrap(y - cy.double()[..., None, None]), wrap(x - cx.double()[..., None, None])


def sq_distance(cy: torch.Tensor, cx: torch.Tensor, grid: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Squared periodic distance from centres [...] to every cell, [..., H, W] in ``dtype``."""
    dy, dx = offsets(cy, cx, grid)
    return (dy**2).to(dtype) + (dx**2).to(dtype)


def distance(cy: torch.Tensor, cx: torch.Tensor, grid: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Periodic distance from centres [...] to every cell, [..., H, W] in ``dtype``."""
    return torch.sqrt(sq_distance(cy, cx, grid, dtype))


def plane_phase(ky: torch.Tensor, kx: torch.Tensor, grid: int) -> torch.Tensor:
    """``2π (ky·y + kx·x)`` [..., H, W] for wavevectors [...] (integer k gives a periodic wave)."""
    y, x = coords(grid, ky.device)
    return TWO_PI * (ky.double()[..., None, None] * y + kx.double()[..., None, None] * x)


def integer_wavevector(
    k: torch.Tensor, angle: torch.Tensor, k_max: float, allow_zero: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest integer wavevector ``(ky, kx)`` to magnitude ``k`` at ``angle`` (radians).

    Integer components keep plane waves periodic on the torus; the magnitude is off by at most ~0.7.
    ``k`` is clipped to ``k_max`` (use the Nyquist limit ``grid / 2``). Unless ``allow_zero``, a
    result of (0, 0) becomes (0, 1) so a wave always exists.
    """
    kk = k.double().clamp(0.0 if allow_zero else 1.0, k_max)
    ky = torch.round(kk * torch.sin(angle.double()))
    kx = torch.round(kk * torch.cos(angle.double()))
    if allow_zero:
        return ky, kx
    zero = (ky == 0) & (kx == 0)
    return ky, torch.where(zero, torch.ones_like(kx), kx)


_LATTICE_CACHE: dict[int, torch.Tensor] = {}


def lattice_directions(max_index: int) -> torch.Tensor:
    """[M, 2] int64 primitive lattice directions ``(ny, nx)`` with ``max(|ny|, |nx|) <= max_index``,
    one of each ± pair (lines ``n·r = const`` are periodic on the torus)."""
    if max_index not in _LATTICE_CACHE:
        out = [
            (ny, nx)
            for ny in range(0, max_index + 1)
            for nx in range(-max_index, max_index + 1)
            if (ny > 0 or nx > 0) and math.gcd(ny, abs(nx)) == 1
        ]
        _LATTICE_CACHE[max_index] = torch.tensor(out, dtype=torch.int64)
    return _LATTICE_CACHE[max_index]


def random_lattice_direction(rng: BatchRandom, max_index: int, *shape: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform lattice direction ``(ny, nx)`` [B, *shape] float64 (see :func:`lattice_directions`)."""
    table = lattice_directions(max_index).to(rng.device)
    idx = rng.integers(0, table.shape[0], *shape)
    n = table[idx].double()
    return n[..., 0], n[..., 1]


def lattice_coordinate(ny: torch.Tensor, nx: torch.Tensor, phase: torch.Tensor, grid: int) -> torch.Tensor:
    """``n·r + phase`` wrapped to [-1/2, 1/2): a periodic coordinate across lines spaced ``1/|n|``.

    Multiply by ``1/|n|`` to get physical distance to the line ``n·r + phase ≡ 0``; shape [..., H, W].
    """
    y, x = coords(grid, ny.device)
    s = ny.double()[..., None, None] * y + nx.double()[..., None, None] * x + phase.double()[..., None, None]
    return wrap(s)


def tanh_profile(signed_distance: torch.Tensor, width: torch.Tensor | float) -> torch.Tensor:
    """Interface profile ``tanh(φ / w)``: -1 outside, +1 inside; ``w`` broadcasts over trailing dims."""
    w = torch.as_tensor(width, dtype=torch.float64, device=signed_distance.device)
    return torch.tanh(signed_distance / w[..., None, None] if w.ndim else signed_distance / w)


def splat(cy: torch.Tensor, cx: torch.Tensor, weight: torch.Tensor, grid: int) -> torch.Tensor:
    """Bilinear deposit of point weights onto the periodic grid.

    ``cy, cx`` [B, N] positions in [0, 1), ``weight`` [B, C, N] → [B, C, H, W] float64 (the sum of
    the weights is conserved).
    """
    b, c, n = weight.shape
    gy, gx = cy.double() * grid, cx.double() * grid
    y0, x0 = torch.floor(gy), torch.floor(gx)
    fy, fx = gy - y0, gx - x0
    out = torch.zeros(b, c, grid * grid, dtype=torch.float64, device=weight.device)
    for oy, ox, wgt in (
        (0, 0, (1 - fy) * (1 - fx)),
        (0, 1, (1 - fy) * fx),
        (1, 0, fy * (1 - fx)),
        (1, 1, fy * fx),
    ):
        iy = torch.remainder(y0.long() + oy, grid)
        ix = torch.remainder(x0.long() + ox, grid)
        idx = (iy * grid + ix)[:, None, :].expand(b, c, n)
        out.scatter_add_(2, idx, weight.double() * wgt[:, None, :])
    return out.reshape(b, c, grid, grid)


def gaussian_envelope(
    dy: torch.Tensor, dx: torch.Tensor, angle: torch.Tensor, s_major: torch.Tensor, s_minor: torch.Tensor
) -> torch.Tensor:
    """Anisotropic envelope exp(-x'²/4σ₁² - y'²/4σ₂²) (so |envelope|² has stds σ₁, σ₂).

    ``dy, dx`` [..., H, W] (or broadcastable) displacements; ``angle`` (major axis, radians), stds [...].
    """
    c, s = torch.cos(angle)[..., None, None], torch.sin(angle)[..., None, None]
    xp = dx * c + dy * s
    yp = -dx * s + dy * c
    return torch.exp(-(xp**2) / (4 * s_major[..., None, None] ** 2) - yp**2 / (4 * s_minor[..., None, None] ** 2))


PHASE_CHANNELS = "phase-stepped projections Re(ψ·e^{-iπc/C}) of one complex field (C=2: Re, Im)"
"""Channel convention of the types that project a complex field with :func:`phase_projections`."""


def phase_projections(psi: torch.Tensor, channels: int) -> torch.Tensor:
    """Channels of a complex field: ``Re(ψ e^{-iπc/C})`` for c = 0..C-1, ``psi`` [B, H, W] → [B, C, H, W].

    C = 1 gives Re ψ, C = 2 gives (Re ψ, Im ψ); more channels are evenly phase-stepped projections.
    """
    shift = torch.exp(-1j * math.pi * torch.arange(channels, device=psi.device, dtype=torch.float64) / channels)
    return (psi[:, None] * shift[None, :, None, None].to(psi.dtype)).real.float()

"""Tier 4 — research-frontier IC types: quantum and relativistic states, controlled channel
dependence, regulatory steady states, aggregation clusters and noisy codewords.

Each type registers its unstandardised core ``*_raw`` [B, C, H, W] (what the property tests measure);
:func:`spinlock.ics.generate_ic` standardises it.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
from pydantic import Field

from spinlock.ics.base import register
from spinlock.ics.geometry import (
    PHASE_CHANNELS,
    gaussian_envelope,
    integer_wavevector,
    offsets,
    phase_projections,
    plane_phase,
)
from spinlock.ics.noise import white_noise
from spinlock.ics.params import ICParams, choices, draw, draw_choice, ispan, span
from spinlock.ics.spectral import TWO_PI, filtered_noise, gaussian_amplitude, power_law_amplitude
from spinlock.rng import BatchRandom


# --------------------------------------------------------------------------------------------------
class CoherentParams(ICParams):
    kinds: choices(Literal["coherent", "cat"]) = ["coherent", "cat"]
    """State kinds; each sample picks one: a coherent state or an even/odd 'cat' superposition."""
    oscillator_length: span(0.01, 0.15) = (0.03, 0.08)
    """Ground-state std σ0 of |ψ|² (σ0 = sqrt(ħ / 2mω)), fraction of the domain. Log-uniform."""
    momentum: span(0.0, 64.0) = (0.0, 12.0)
    """Mean momentum |⟨p⟩| / 2πħ, cycles per domain (rounded to an integer wavevector, may be 0)."""
    separation: span(0.05, 0.45) = (0.15, 0.35)
    """Cat: distance between the two coherent components, fraction of the domain."""


def coherent_state_psi(p: CoherentParams, rng: BatchRandom, grid: int, device: torch.device) -> torch.Tensor:
    """ψ [B, H, W] complex128 (unnormalised): a displaced ground state exp(-|r-r0|²/4σ0² + i p0·r),
    or the cat state |α⟩ + e^{iφ}|-α⟩ (components at r0 ± Δ/2 with momenta ±p0)."""
    kind = draw_choice(rng, p.kinds)
    sigma = draw(rng, p.oscillator_length, log=True)
    k = draw(rng, p.momentum)
    k_angle = rng.uniform64() * TWO_PI
    cy, cx = rng.uniform64(), rng.uniform64()
    sep = draw(rng, p.separation)
    s_angle = rng.uniform64() * math.pi
    rel = rng.uniform64() * TWO_PI
    glob = rng.uniform64() * TWO_PI  # global phase: physically irrelevant, decorrelates Re/Im channels
    ky, kx = integer_wavevector(k, k_angle, grid / 2 - 1, allow_zero=True)
    names = ["coherent", "cat"]
    cat = torch.tensor([names.index(n) for n in p.kinds], device=device)[kind] == 1
    half = torch.where(cat, sep / 2, torch.zeros_like(sep))
    psi = torch.zeros(rng.batch, grid, grid, dtype=torch.complex128, device=device)
    for sign in (1.0, -1.0):
        dy, dx = offsets(cy + sign * half * torch.sin(s_angle), cx + sign * half * torch.cos(s_angle), grid)
        env = gaussian_envelope(dy, dx, s_angle, sigma, sigma)
        carrier = torch.exp(1j * sign * plane_phase(ky, kx, grid))
        if sign > 0:
            weight = torch.ones_like(rel, dtype=torch.complex128)
        else:  # the second component exists only for cat states, with relative phase φ
            weight = torch.where(cat, torch.exp(1j * rel), torch.zeros_like(rel, dtype=torch.complex128))
        psi = psi + weight[:, None, None] * env * carrier
    return psi * torch.exp(1j * glob)[:, None, None]


@register(
    "coherent_state",
    tier=4,
    params=CoherentParams,
    description="Minimum-uncertainty coherent states of a harmonic oscillator, or two-component cat states.",
    channels=PHASE_CHANNELS,
)
def coherent_state_raw(
    p: CoherentParams, rng: BatchRandom, channels: int, grid: int, device: torch.device
) -> torch.Tensor:
    return phase_projections(coherent_state_psi(p, rng, grid, device), channels)


# --------------------------------------------------------------------------------------------------
class RelativisticParams(ICParams):
    speed: span(0.0, 0.99) = (0.0, 0.9)
    """Packet speed β = v/c."""
    rest_width: span(0.01, 0.15) = (0.04, 0.1)
    """Rest-frame std σ of |ψ|² (isotropic), fraction of the domain. Log-uniform."""
    compton_wavenumber: span(1.0, 64.0) = (4.0, 12.0)
    """Compton wavenumber mc/h, cycles per domain: the carrier is p/h = γβ·mc/h (integer-rounded)."""


class Packet(NamedTuple):
    """The relativistic packet of each sample, every field [B] float64: speed ``beta`` = v/c, rest-frame std
    ``sigma``, Compton wavenumber ``compton`` (cycles per domain), direction of motion ``angle`` (radians),
    centre ``cy, cx`` and global ``phase``."""

    beta: torch.Tensor
    sigma: torch.Tensor
    compton: torch.Tensor
    angle: torch.Tensor
    cy: torch.Tensor
    cx: torch.Tensor
    phase: torch.Tensor


def relativistic_packet(p: RelativisticParams, rng: BatchRandom) -> Packet:
    """The packet of :func:`relativistic_psi` (every draw it makes)."""
    beta = draw(rng, p.speed)
    sigma = draw(rng, p.rest_width, log=True)
    kc = draw(rng, p.compton_wavenumber)
    angle = rng.uniform64() * TWO_PI
    cy, cx = rng.uniform64(), rng.uniform64()
    glob = rng.uniform64() * TWO_PI  # global phase (irrelevant physically; keeps Re and Im both non-zero)
    return Packet(beta, sigma, kc, angle, cy, cx, glob)


def relativistic_psi(p: RelativisticParams, rng: BatchRandom, grid: int, device: torch.device) -> torch.Tensor:
    """Lab-frame ψ [B, H, W] complex128 of :func:`relativistic_packet`: a Gaussian packet Lorentz-contracted
    to σ/γ along its velocity (σ across it) with de Broglie carrier γβ·k_C along the velocity."""
    beta, sigma, kc, angle, cy, cx, glob = relativistic_packet(p, rng)
    gamma = 1.0 / torch.sqrt(1.0 - beta**2)
    dy, dx = offsets(cy, cx, grid)
    env = gaussian_envelope(dy, dx, angle, sigma / gamma, sigma)
    ky, kx = integer_wavevector(gamma * beta * kc, angle, grid / 2 - 1, allow_zero=True)
    return env * torch.exp(1j * (plane_phase(ky, kx, grid) + glob[:, None, None]))


@register(
    "relativistic_wave_packet",
    tier=4,
    params=RelativisticParams,
    description="A moving Gaussian packet, Lorentz-contracted by 1/γ along its velocity, de Broglie carrier.",
    channels=PHASE_CHANNELS,
)
def relativistic_wave_packet_raw(
    p: RelativisticParams, rng: BatchRandom, channels: int, grid: int, device: torch.device
) -> torch.Tensor:
    return phase_projections(relativistic_psi(p, rng, grid, device), channels)


# --------------------------------------------------------------------------------------------------
class MutualInfoParams(ICParams):
    correlation: span(0.0, 0.99) = (0.0, 0.9)
    """Pairwise correlation ρ between channels (exact per sample); the Gaussian mutual information of
    a channel pair is -½ ln(1 - ρ²) nats."""
    latent_beta: float = Field(3.0, ge=0.0, le=8.0)
    """Spectral slope of the shared latent field."""
    noise_beta: float = Field(3.0, ge=0.0, le=8.0)
    """Spectral slope of each channel's private field."""


@register(
    "mutual_information",
    tier=4,
    params=MutualInfoParams,
    description="Channels sharing one latent Gaussian field, with an exact pairwise correlation ρ.",
    channels="√ρ·(shared latent) + √(1-ρ)·(private field); every pair correlates exactly ρ",
)
def mutual_information_raw(
    p: MutualInfoParams, rng: BatchRandom, channels: int, grid: int, device: torch.device
) -> torch.Tensor:
    """x_c = √ρ·z + √(1-ρ)·e_c with z, e_1..e_C orthonormalised (Gram–Schmidt over the grid), so the
    sample correlation of every channel pair is exactly ρ; [B, C, H, W]."""
    rho = draw(rng, p.correlation)
    white = white_noise(rng, channels + 1, grid, grid)
    amp = torch.stack(
        [power_law_amplitude(grid, p.latent_beta, device)]
        + [power_law_amplitude(grid, p.noise_beta, device)] * channels
    )
    f = filtered_noise(white, amp).double().reshape(rng.batch, channels + 1, -1)
    f = f - f.mean(-1, keepdim=True)
    basis = []
    for i in range(channels + 1):  # modified Gram–Schmidt, vectorised over the batch
        v = f[:, i]
        for q in basis:
            v = v - (v * q).sum(-1, keepdim=True) * q
        basis.append(v / v.norm(dim=-1, keepdim=True).clamp_min(1e-300))
    q = torch.stack(basis, dim=1) * math.sqrt(grid * grid)  # unit mean square
    r = rho[:, None, None]
    x = torch.sqrt(r) * q[:, :1] + torch.sqrt(1.0 - r) * q[:, 1:]
    return x.reshape(rng.batch, channels, grid, grid).float()


# --------------------------------------------------------------------------------------------------
class RegulatoryParams(ICParams):
    coupling: span(0.0, 0.95) = (0.2, 0.6)
    """Row-sum norm of |W| (< 1 makes x ↦ tanh(Wx + u) a contraction: one steady state)."""
    density: float = Field(0.5, ge=0.0, le=1.0)
    """Probability that a regulatory edge j → i (self-regulation included) exists."""
    input_beta: span(0.0, 8.0) = (2.5, 4.0)
    """Spectral slope of the smooth external inputs u (morphogen-like signals)."""
    input_strength: span(0.1, 5.0) = (0.5, 2.0)
    """Std of the inputs u."""


def regulatory_iterations(coupling_max: float, tol: float = 1e-5) -> int:
    """Fixed-point iterations so the contraction error coupling_max^n ≤ tol (a config-only count)."""
    if coupling_max <= 0.0:
        return 1
    return max(1, math.ceil(math.log(tol) / math.log(coupling_max)))


def regulatory_system(
    p: RegulatoryParams, rng: BatchRandom, channels: int, grid: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The network of :func:`regulatory_network_raw` (every draw it makes): couplings W [B, C, C] and inputs
    u [B, C, H·W], both float32.

    W has edges with probability ``density``, random signs and magnitudes, rows scaled to |W| row sum =
    coupling; u is smooth power-law noise of the configured std per gene.
    """
    c = channels
    coupling = draw(rng, p.coupling)
    beta = draw(rng, p.input_beta, c)
    strength = draw(rng, p.input_strength, c)
    edges = rng.uniform64(c, c) < p.density
    mag = rng.uniform64(c, c)
    sign = torch.where(rng.uniform64(c, c) < 0.5, -1.0, 1.0)
    white = white_noise(rng, c, grid, grid)
    w = mag * sign * edges
    rows = w.abs().sum(-1, keepdim=True)
    w = torch.where(rows > 0, w / rows.clamp_min(1e-300), w) * coupling[:, None, None]
    u = filtered_noise(white, power_law_amplitude(grid, beta, device))
    u = (u - u.mean(dim=(-2, -1), keepdim=True)) / u.std(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    return w.float(), (u * strength[..., None, None]).reshape(rng.batch, c, -1).float()


@register(
    "regulatory_network",
    tier=4,
    params=RegulatoryParams,
    description="Per-pixel steady state of a sparse random gene-regulatory network driven by smooth inputs.",
    channels="genes of one network: each channel is one gene's steady-state expression",
)
def regulatory_network_raw(
    p: RegulatoryParams, rng: BatchRandom, channels: int, grid: int, device: torch.device
) -> torch.Tensor:
    """Steady state x* = tanh(W x* + u) of a sparse random signed network (:func:`regulatory_system`), per
    pixel; [B, C, H, W]. Genes are channels. Solved by fixed-point iteration with a config-determined count
    (contraction error ≤ 1e-5)."""
    wf, u = regulatory_system(p, rng, channels, grid, device)
    x = torch.tanh(u)
    for _ in range(regulatory_iterations(p.coupling[1])):
        x = torch.tanh(torch.baddbmm(u, wf, x))
    return x.reshape(rng.batch, channels, grid, grid)


# --------------------------------------------------------------------------------------------------
class DLAParams(ICParams):
    size: span(0.001, 0.2) = (0.01, 0.04)
    """Cluster size as a fraction of the grid's cells (at least one cell)."""
    screening: span(0.0, 40.0) = (8.0, 24.0)
    """Screening exponent η: attachment rate ∝ (1 - local density)^η (0 = Eden growth; larger gives
    thinner, more branched clusters, as in the dielectric-breakdown family that contains DLA)."""


DLA_BLUR_CELLS = 4.0
"""Std (in cells) of the Gaussian that measures local cluster density for screening."""

DLA_REFRESH = 1.0
"""Rates are refreshed every k = round(DLA_REFRESH·√n) attachments (n: current size): ~2√N/DLA_REFRESH steps.
Smaller is closer to one-at-a-time growth (more screening, more branches) and slower."""


def _neighbours(idx: torch.Tensor, grid: int) -> torch.Tensor:
    """4-neighbours (periodic) of flat cell indices ``idx`` [B, K] → [B, 4K]."""
    r, c = torch.div(idx, grid, rounding_mode="floor"), torch.remainder(idx, grid)
    up, down = torch.remainder(r - 1, grid) * grid + c, torch.remainder(r + 1, grid) * grid + c
    left, right = r * grid + torch.remainder(c - 1, grid), r * grid + torch.remainder(c + 1, grid)
    return torch.cat([up, down, left, right], dim=1)


def _density_stamp(grid: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Separable periodic stamp of a normalised Gaussian (std :data:`DLA_BLUR_CELLS`, truncated at 3σ).

    Returns ``rows [grid, S]`` (flat offset ``((r + d) mod grid)·grid`` of each stamp row for a cell in row
    r), ``cols [grid, S]`` (``(c + d) mod grid``) and ``weights [S, S]`` summing to 1.
    """
    r = math.ceil(3 * DLA_BLUR_CELLS)
    o = torch.arange(-r, r + 1, device=device)
    base = torch.arange(grid, device=device)[:, None]
    g1 = torch.exp(-(o.double() ** 2) / (2 * DLA_BLUR_CELLS**2))
    w = (g1[:, None] * g1[None, :]).float()
    return torch.remainder(base + o, grid) * grid, torch.remainder(base + o, grid), w / w.sum()


@register(
    "dla_cluster",
    tier=4,
    params=DLAParams,
    description="A single branched aggregate grown by screened (DLA-like) perimeter growth from one seed.",
    channels="one cluster: channel c is its occupancy blurred by a Gaussian of c cells (c = 0: bare)",
)
def dla_cluster_raw(p: DLAParams, rng: BatchRandom, channels: int, grid: int, device: torch.device) -> torch.Tensor:
    """One 4-connected aggregate grown from a seed; channel c is its occupancy blurred by c cells.

    Continuous-time growth on the perimeter (Eden-type with screened rates, the dielectric-breakdown
    family): every empty neighbour s of the cluster carries an Exp(1) clock and accumulates hazard at
    rate λ_s = (1 - ρ_s)^η, ρ the cluster density under a Gaussian of :data:`DLA_BLUR_CELLS` cells, so
    exposed tips grow and fjords are screened. Sites fire in order of their time to fire; rates are
    refreshed every k ≈ √n attachments. Exactly ``round(size·H·W)`` cells are occupied.

    Work is proportional to the cluster, not the grid: the perimeter is an append-only list per sample
    (capacity 4N + 4, occupied entries die in place) and ρ is updated by stamping the Gaussian at each
    new cell. Returns [B, C, H, W]; channel 0 is the occupancy itself (exactly 0 or 1).
    """
    b, hw = rng.batch, grid * grid
    n_cap = min(max(round(p.size[1] * hw), 1), hw // 2)  # config bound: fixes every shape below
    cap = 4 * n_cap + 4
    target = torch.clamp(torch.round(draw(rng, p.size) * hw), 1, hw // 2).long()
    eta = draw(rng, p.screening).float()[:, None]
    seed = rng.integers(0, hw)
    cell_clock = -torch.log(rng.uniform64(hw)).float()  # one Exp(1) clock per cell
    rows = torch.arange(b, device=device)[:, None]
    stamp_rows, stamp_cols, stamp_w = _density_stamp(grid, device)

    occ = torch.zeros(b, hw + 1, dtype=torch.bool, device=device)  # + trash column for masked scatters
    listed = torch.zeros(b, hw + 1, dtype=torch.bool, device=device)  # ever entered the perimeter list
    dens = torch.zeros(b, hw + 1, device=device)
    site = torch.full((b, cap + 1), hw, dtype=torch.int64, device=device)  # perimeter list (+ trash slot)
    alive = torch.zeros(b, cap + 1, dtype=torch.bool, device=device)
    clock = torch.zeros(b, cap + 1, device=device)
    hazard = torch.zeros(b, cap + 1, device=device)
    size = torch.zeros(b, dtype=torch.int64, device=device)  # entries used in the list

    def attach(new: torch.Tensor, ok: torch.Tensor) -> None:
        """Occupy cells ``new`` [B, K] where ``ok``; stamp density; append their empty neighbours."""
        nonlocal size
        new = torch.where(ok, new, 0)  # masked entries stamp zero weight on cell 0
        occ[rows, torch.where(ok, new, hw)] = True
        r, c = torch.div(new, grid, rounding_mode="floor"), torch.remainder(new, grid)
        tgt = stamp_rows[r][..., :, None] + stamp_cols[c][..., None, :]  # [B, K, S, S] periodic flat cells
        dens.scatter_add_(1, tgt.reshape(b, -1), (stamp_w * ok[..., None, None]).reshape(b, -1))
        nbr = _neighbours(new, grid)
        fresh = ok.repeat(1, 4) & ~occ.gather(1, nbr) & ~listed.gather(1, nbr)
        # a cell can be the neighbour of two new cells: keep its first occurrence only
        order = torch.where(fresh, nbr, hw + 1 + torch.arange(nbr.shape[1], device=device))
        srt, perm = order.sort(dim=1, stable=True)
        first = torch.ones_like(fresh)
        first[:, 1:] = srt[:, 1:] != srt[:, :-1]
        fresh = torch.zeros_like(fresh).scatter(1, perm, first & (srt <= hw))
        listed[rows, torch.where(fresh, nbr, hw)] = True
        slot = torch.where(fresh, size[:, None] + fresh.long().cumsum(1) - 1, cap)
        site[rows, slot] = torch.where(fresh, nbr, hw)
        alive[rows, slot] = fresh
        clock[rows, slot] = torch.where(fresh, cell_clock.gather(1, nbr.clamp_max(hw - 1)), 0.0)
        site[:, cap], alive[:, cap] = hw, False
        size = size + fresh.sum(1)

    attach(seed[:, None], torch.ones(b, 1, dtype=torch.bool, device=device))
    n = torch.ones(b, dtype=torch.int64, device=device)
    while bool((n < target).any()):
        k = torch.minimum(torch.round(DLA_REFRESH * torch.sqrt(n.double())).long().clamp_min(1), target - n)
        m = int(size.max())  # list entries in use anywhere in the batch (the rest are inert)
        live = alive[:, :m]
        rate = torch.pow((1.0 - dens.gather(1, site[:, :m])).clamp_min(0.0), eta) * live
        ttf = torch.where(live, (clock[:, :m] - hazard[:, :m]) / rate, torch.inf)  # dead entries never fire
        kmax = int(k.max())
        val, pos = torch.topk(ttf, min(kmax, m), dim=1, largest=False, sorted=True)
        take = torch.arange(pos.shape[1], device=device)[None] < k[:, None]
        if kmax > m or bool((take & ~torch.isfinite(val)).any()):
            raise RuntimeError("DLA growth ran out of perimeter sites (cluster too large for the grid)")
        dt = val.gather(1, (k - 1).clamp_min(0)[:, None]).clamp_min(0.0) * (k > 0)[:, None]
        hazard[:, :m] = torch.addcmul(hazard[:, :m], rate, dt)
        alive[rows, torch.where(take, pos, cap)] = False
        alive[:, cap] = False
        attach(site.gather(1, pos), take)
        n = n + k
    o = occ[:, :hw].view(b, 1, grid, grid)
    widths = torch.arange(channels, device=device, dtype=torch.float64) / grid
    spec = torch.fft.rfft2(o.double()) * gaussian_amplitude(grid, widths, device)[None]
    blurred = torch.fft.irfft2(spec, s=(grid, grid))
    return torch.where(widths[None, :, None, None] > 0, blurred, o.double()).float()


# --------------------------------------------------------------------------------------------------
class CodeParams(ICParams):
    symbol_size: ispan(1, 16) = (3, 8)
    """Side of one code symbol in cells; the grid holds n = grid // symbol_size symbols per side (the size is
    capped at grid // 4 so n ≥ 4)."""
    flip_rate: span(0.0, 0.5) = (0.0, 0.1)
    """Binary-symmetric-channel flip probability applied to every transmitted symbol."""


def code_symbols(
    p: CodeParams, rng: BatchRandom, channels: int, grid: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The symbol arrays of :func:`error_correcting_code_raw` (every draw it makes): the ``clean`` codeword
    and the ``noisy`` received word, [B, C, n_max, n_max] bool (True = bit 1; entries beyond n × n are
    False), and the symbols per side ``n`` [B] int64.

    The n × n codeword holds (n-1)² random data bits and a parity bit closing every row and every column (so
    every row and column has even parity); every symbol is flipped with probability p in transmission.
    """
    c = channels
    s_cap = max(grid // 4, 1)  # at least 4 symbols per side, so a codeword is never trivially constant
    n_max = grid // min(p.symbol_size[0], s_cap)
    s = rng.integers(p.symbol_size[0], p.symbol_size[1] + 1).clamp(max=s_cap)
    n = grid // s
    rate = draw(rng, p.flip_rate, c)
    data = rng.uniform64(c, n_max, n_max) < 0.5
    flips = rng.uniform64(c, n_max, n_max) < rate[..., None, None]
    i = torch.arange(n_max, device=device)
    nn = n[:, None, None, None]
    inner = (i[:, None] < nn - 1) & (i[None, :] < nn - 1)  # [B, 1, n_max, n_max]
    d = data & inner
    row_par = d.sum(-1, keepdim=True) % 2 == 1
    col_par = d.sum(-2, keepdim=True) % 2 == 1
    corner = d.sum((-2, -1), keepdim=True) % 2 == 1
    last_r, last_c = i[:, None] == nn - 1, i[None, :] == nn - 1
    clean = torch.where(last_r & last_c, corner, torch.where(last_c, row_par, torch.where(last_r, col_par, d)))
    used = (i[:, None] < nn) & (i[None, :] < nn)
    clean = clean & used
    return clean, (clean ^ flips) & used, n


@register(
    "error_correcting_code",
    tier=4,
    params=CodeParams,
    description="A ±1 product-parity codeword image with symbols flipped by a binary symmetric channel.",
)
def error_correcting_code_raw(
    p: CodeParams, rng: BatchRandom, channels: int, grid: int, device: torch.device
) -> torch.Tensor:
    """BPSK (±1, bit 1 → -1) image of the received word of :func:`code_symbols`, a single-parity-check product
    codeword sent through a binary symmetric channel, drawn as blocks of ~grid/n cells. Channels carry
    independent messages. Returns [B, C, H, W] in {-1, +1}."""
    _, noisy, n = code_symbols(p, rng, channels, grid, device)
    n_max = noisy.shape[-1]
    pix = torch.arange(grid, device=device)
    sym = torch.div(pix[None, :] * n[:, None], grid, rounding_mode="floor")  # [B, grid] symbol of each cell
    rows = sym[:, None, :, None].expand(-1, channels, -1, n_max)
    img = noisy.gather(2, rows)
    img = img.gather(3, sym[:, None, None, :].expand(-1, channels, grid, -1))
    return torch.where(img, -1.0, 1.0)

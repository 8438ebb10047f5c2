"""Tier 3 — complex-systems IC types: interference, cell populations, chromatin contact maps, shocks
and spatial gene expression.

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
    coords,
    distance,
    integer_wavevector,
    lattice_coordinate,
    plane_phase,
    random_lattice_direction,
    splat,
    wrap,
)
from spinlock.ics.noise import white_noise
from spinlock.ics.params import ICParams, choices, draw, draw_choice, draw_int, ispan, span
from spinlock.ics.spectral import TWO_PI
from spinlock.rng import BatchRandom


# --------------------------------------------------------------------------------------------------
class InterferenceParams(ICParams):
    geometries: choices(Literal["plane", "point"]) = ["plane", "point"]
    """Source kinds; each sample picks one: plane waves (sources at infinity) or point emitters."""
    sources: ispan(2, 6) = (2, 3)
    """Number of coherent sources of equal amplitude."""
    wavelength: span(0.01, 0.3) = (0.03, 0.1)
    """Wavelength λ of the sources, fraction of the domain. Log-uniform."""
    angle: span(1.0, 180.0) = (20.0, 120.0)
    """Plane: angle in degrees between beam j > 0 and beam 0 (two beams: fringe spacing λ/(2 sin(α/2)))."""
    separation: span(0.01, 0.45) = (0.05, 0.25)
    """Point: distance of each source from the first (two sources: fringes λ/2 apart between them)."""


class Sources(NamedTuple):
    """The coherent sources of each sample (N = the span's maximum): plane-beam integer wavevectors
    ``ky, kx`` [B, N] float64, point-emitter positions ``sy, sx`` [B, N] float64, ``point`` [B] bool
    (point emitters, else plane beams), ``on`` [B, N] bool (sources in use) and ``wavelength`` [B]."""

    ky: torch.Tensor
    kx: torch.Tensor
    sy: torch.Tensor
    sx: torch.Tensor
    point: torch.Tensor
    on: torch.Tensor
    wavelength: torch.Tensor


def interference_sources(p: InterferenceParams, rng: BatchRandom, grid: int, device: torch.device) -> Sources:
    """The sources of :func:`interference_raw` (its draws, all but the source phases)."""
    n = p.sources[1]
    kind = draw_choice(rng, p.geometries)
    count = draw_int(rng, p.sources)
    lam = draw(rng, p.wavelength, log=True)
    base = rng.uniform64() * TWO_PI
    rel = draw(rng, p.angle, n) * (math.pi / 180.0) * torch.where(rng.uniform64(n) < 0.5, -1.0, 1.0)
    sy0, sx0 = rng.uniform64(), rng.uniform64()
    sep = draw(rng, p.separation, n)
    sdir = rng.uniform64(n) * TWO_PI

    angles = base[:, None] + torch.where(torch.arange(n, device=device) == 0, 0.0, rel)
    ky, kx = integer_wavevector((1.0 / lam)[:, None].expand(-1, n), angles, grid / 2 - 1)
    first = torch.arange(n, device=device) == 0
    sy = torch.remainder(sy0[:, None] + torch.where(first, 0.0, sep * torch.sin(sdir)), 1.0)
    sx = torch.remainder(sx0[:, None] + torch.where(first, 0.0, sep * torch.cos(sdir)), 1.0)
    names = ["plane", "point"]
    point = torch.tensor([names.index(g) for g in p.geometries], device=device)[kind] == 1
    on = torch.arange(n, device=device)[None] < count[:, None]
    return Sources(ky, kx, sy, sx, point, on, lam)


@register(
    "interference_pattern",
    tier=3,
    params=InterferenceParams,
    description="Intensity fringes of coherent plane waves or point emitters.",
    channels="phase-stepped interferograms: source j shifted by 2πcj/C in channel c",
)
def interference_raw(
    p: InterferenceParams, rng: BatchRandom, channels: int, grid: int, device: torch.device
) -> torch.Tensor:
    """Intensity |Σ_j a_j e^{iφ_j(r)}|² [B, C, H, W] of coherent sources (:func:`interference_sources`).

    Plane beams (a = 1) have integer wavevectors (periodic); point sources use the periodic distance ρ and a
    taper a = cos²(πρ) that hides the seam where ρ folds at the antipode. Channel c
    steps the phase of source j by 2πcj/C (phase-shifting interferometry).
    """
    n = p.sources[1]
    ky, kx, sy, sx, point, on, lam = interference_sources(p, rng, grid, device)
    phase0 = rng.uniform64(n) * TWO_PI
    steps = TWO_PI * torch.arange(channels, device=device, dtype=torch.float64) / channels

    field = torch.zeros(rng.batch, channels, grid, grid, dtype=torch.complex64, device=device)
    for j in range(n):  # few sources; accumulate the complex amplitude per channel
        rho = distance(sy[:, j], sx[:, j], grid)
        phase_pt = TWO_PI * rho / lam[:, None, None]
        taper = torch.cos(math.pi * rho) ** 2  # 1 at the emitter, 0 (flat) at its antipode: smooth on the torus
        phase_pl = plane_phase(ky[:, j], kx[:, j], grid)
        wave = torch.where(point[:, None, None], taper * torch.exp(1j * phase_pt), torch.exp(1j * phase_pl))
        wave = (wave * on[:, j, None, None]).to(torch.complex64)
        shift = phase0[:, j, None] + j * steps[None, :]  # [B, C]
        field = field + wave[:, None] * torch.exp(1j * shift).to(torch.complex64)[..., None, None]
    return (field.abs() ** 2).float()


# --------------------------------------------------------------------------------------------------
class CellPopulationParams(ICParams):
    arrangements: choices(Literal["uniform", "clustered"]) = ["uniform", "clustered"]
    """Candidate placement; each sample picks one: uniform, or Gaussian clusters around parents."""
    candidates: ispan(1, 512) = (30, 120)
    """Proposed cells before hard-core rejection (random sequential adsorption keeps a subset)."""
    min_spacing: span(0.01, 0.3) = (0.04, 0.08)
    """Hard-core distance between cell centres, fraction of the domain."""
    radius_ratio: span(0.1, 1.0) = (0.6, 0.9)
    """Cell radius as a fraction of min_spacing/2 (≤ 1, so cells never overlap)."""
    clusters: ispan(1, 16) = (2, 6)
    """Clustered: number of parent centres."""
    cluster_spread: span(0.01, 0.3) = (0.04, 0.1)
    """Clustered: std of candidate offsets around their parent, fraction of the domain."""
    marker_cv: span(0.0, 2.0) = (0.2, 0.6)
    """Coefficient of variation of the per-cell marker levels (log-normal, mean 1) in channels ≥ 1."""


def hard_core_keep(cy: torch.Tensor, cx: torch.Tensor, valid: torch.Tensor, spacing: torch.Tensor) -> torch.Tensor:
    """Random sequential adsorption: candidate i is kept if it is at least ``spacing`` (periodic) from
    every earlier kept one. ``cy, cx, valid`` [B, N], ``spacing`` [B] → keep [B, N] bool.

    One pass over candidates (N iterations), vectorised over the batch.
    """
    dy, dx = wrap(cy[:, :, None] - cy[:, None, :]), wrap(cx[:, :, None] - cx[:, None, :])
    conflict = (dy**2 + dx**2) < (spacing**2)[:, None, None]  # [B, N, N]
    keep = torch.zeros_like(valid)
    for i in range(cy.shape[1]):
        clash = (conflict[:, i, :i] & keep[:, :i]).any(dim=1)
        keep[:, i] = valid[:, i] & ~clash
    return keep


class Population(NamedTuple):
    """The cells of each sample (N = the candidates span's maximum): centres ``cy, cx`` [B, N] float64,
    ``keep`` [B, N] bool (cells that survived hard-core rejection), the hard-core ``spacing`` [B], the cell
    ``radius`` [B] and the CV of the marker levels ``marker_cv`` [B]."""

    cy: torch.Tensor
    cx: torch.Tensor
    keep: torch.Tensor
    spacing: torch.Tensor
    radius: torch.Tensor
    marker_cv: torch.Tensor


def cell_population_cells(p: CellPopulationParams, rng: BatchRandom, device: torch.device) -> Population:
    """The population of :func:`cell_population_raw` (its draws, all but the marker levels)."""
    n, n_par = p.candidates[1], p.clusters[1]
    kind = draw_choice(rng, p.arrangements)
    count = draw_int(rng, p.candidates)
    spacing = draw(rng, p.min_spacing)
    radius = draw(rng, p.radius_ratio) * spacing / 2
    n_clusters = draw_int(rng, p.clusters)
    spread = draw(rng, p.cluster_spread)
    cv = draw(rng, p.marker_cv)
    uy, ux = rng.uniform64(n), rng.uniform64(n)
    py, px = rng.uniform64(n_par), rng.uniform64(n_par)
    parent = torch.floor(rng.uniform64(n) * n_clusters[:, None]).long().clamp_max(n_par - 1)
    offset = white_noise(rng, 2, n).double() * spread[:, None, None]

    names = ["uniform", "clustered"]
    clustered = (torch.tensor([names.index(a) for a in p.arrangements], device=device)[kind] == 1)[:, None]
    cy = torch.where(clustered, torch.remainder(py.gather(1, parent) + offset[:, 0], 1.0), uy)
    cx = torch.where(clustered, torch.remainder(px.gather(1, parent) + offset[:, 1], 1.0), ux)
    valid = torch.arange(n, device=device)[None] < count[:, None]
    return Population(cy, cx, hard_core_keep(cy, cx, valid, spacing), spacing, radius, cv)


@register(
    "cell_population",
    tier=3,
    params=CellPopulationParams,
    description="Disc-shaped cells at hard-core (minimum-spacing) positions, uniform or clustered.",
    channels="one population: channel 0 occupancy, channel c ≥ 1 independent per-cell marker levels",
)
def cell_population_raw(
    p: CellPopulationParams, rng: BatchRandom, channels: int, grid: int, device: torch.device
) -> torch.Tensor:
    """Smooth discs at the centres of :func:`cell_population_cells`; channel 0 = occupancy, channel c ≥ 1 =
    marker level × disc. Returns [B, C, H, W]."""
    cy, cx, keep, _, radius, cv = cell_population_cells(p, rng, device)
    markers = white_noise(rng, max(channels - 1, 1), p.candidates[1]).double()

    s2 = torch.log1p(cv**2)[:, None, None]  # log-normal with mean 1 and the requested CV
    level = torch.exp(torch.sqrt(s2) * markers - s2 / 2)[:, : channels - 1]
    weights = torch.cat([torch.ones_like(cx)[:, None], level], dim=1) * keep[:, None]  # [B, C, N]
    deposits = splat(cy, cx, weights, grid)
    zero = torch.zeros(rng.batch, device=device)
    h = 0.5 / grid  # disc edge: half a cell
    disc = 0.5 * (1.0 - torch.tanh((distance(zero, zero, grid) - radius[:, None, None]) / h))
    kernel = torch.fft.rfft2(disc)[:, None]
    return torch.fft.irfft2(torch.fft.rfft2(deposits) * kernel, s=(grid, grid)).float()


# --------------------------------------------------------------------------------------------------
class ChromatinParams(ICParams):
    domains: ispan(1, 64) = (4, 12)
    """Number of topologically associating domains (TADs) along the genome."""
    decay: span(0.0, 3.0) = (0.8, 1.2)
    """Contact decay exponent α: P(s) = (1 + s)^-α for genomic distance s in bins."""
    compartment_strength: span(0.0, 0.9) = (0.2, 0.6)
    """A/B checkerboard contrast c: contacts × (1 + c·a_i·a_j), a = ±1 per TAD."""
    tad_strength: span(0.0, 5.0) = (0.5, 2.0)
    """Extra contact enrichment t inside a TAD: contacts × (1 + t) when i, j share a TAD."""
    noise: span(0.0, 1.0) = (0.05, 0.2)
    """Std of symmetric multiplicative log-normal noise on the contacts."""


class Architecture(NamedTuple):
    """The genome architecture of each sample: TAD index of every bin ``tad`` [B, N] int64, compartment label
    ±1 of every bin per channel (cell type) ``labels`` [B, C, N] float64, and the per-sample ``decay`` exponent
    α, ``compartment_strength``, ``tad_strength`` and log-normal ``noise`` std, each [B] float64."""

    tad: torch.Tensor
    labels: torch.Tensor
    decay: torch.Tensor
    compartment_strength: torch.Tensor
    tad_strength: torch.Tensor
    noise: torch.Tensor


def chromatin_architecture(
    p: ChromatinParams, rng: BatchRandom, channels: int, grid: int, device: torch.device
) -> Architecture:
    """The architecture of :func:`chromatin_domain_raw` (its draws, all but the contact noise).

    TAD boundaries are cuts at random positions along the circular genome of ``grid`` bins; channels share
    them and draw their own compartment label per TAD.
    """
    nb, nd = grid, p.domains[1]
    count = draw_int(rng, p.domains)
    cuts = rng.uniform64(nd) * nb
    alpha = draw(rng, p.decay)
    comp = draw(rng, p.compartment_strength)
    tadw = draw(rng, p.tad_strength)
    sig = draw(rng, p.noise)
    flips = rng.uniform64(channels, nd)

    cuts = torch.where(torch.arange(nd, device=device)[None] < count[:, None], cuts, torch.inf)
    i = torch.arange(nb, device=device, dtype=torch.float64)
    tad = (cuts[:, None, :] <= i[None, :, None]).sum(-1) % count[:, None]  # [B, N], circular wrap
    label = torch.where(flips < 0.5, -1.0, 1.0).double()  # [B, C, nd]
    labels = label.gather(2, tad[:, None, :].expand(-1, channels, -1))  # [B, C, N]
    return Architecture(tad, labels, alpha, comp, tadw, sig)


@register(
    "chromatin_domain",
    tier=3,
    params=ChromatinParams,
    description="Hi-C-like log contact map of a circular genome: distance decay, TADs, A/B checkerboard.",
    channels="cell types: shared TADs and decay, own compartment labels and noise",
)
def chromatin_domain_raw(
    p: ChromatinParams, rng: BatchRandom, channels: int, grid: int, device: torch.device
) -> torch.Tensor:
    """Log contact map of a circular genome of ``grid`` bins: [B, C, N, N], symmetric.

    Row/column i is genomic bin i; distances wrap (circular chromosome), so the map is periodic.
    Channels share TAD boundaries and decay (one genome architecture, :func:`chromatin_architecture`) but
    have their own compartment labels and noise (cell types).
    """
    nb = grid
    tad, a, alpha, comp, tadw, sig = chromatin_architecture(p, rng, channels, grid, device)
    noise = white_noise(rng, channels, nb, nb).double()

    i = torch.arange(nb, device=device, dtype=torch.float64)
    sep = (i[:, None] - i[None, :]).abs()
    s = torch.minimum(sep, nb - sep)
    decay = (1.0 + s)[None] ** (-alpha[:, None, None])  # [B, N, N]
    same = (tad[:, :, None] == tad[:, None, :]).double()
    sym = (noise + noise.transpose(-1, -2)) / math.sqrt(2.0)
    return (
        torch.log(decay)[:, None]
        + torch.log1p(comp[:, None, None, None] * a[..., :, None] * a[..., None, :])
        + torch.log1p(tadw[:, None, None] * same)[:, None]
        + sig[:, None, None, None] * sym
        - sig[:, None, None, None] ** 2 / 2
    ).float()


# --------------------------------------------------------------------------------------------------
class ShockParams(ICParams):
    geometries: choices(Literal["planar", "circular"]) = ["planar", "circular"]
    """Shock shapes; each sample and channel picks one: a sawtooth (N-wave) train or a blast wave."""
    width: span(0.002, 0.05) = (0.005, 0.015)
    """Viscous shock thickness w: the jump follows tanh(x/w), fraction of the domain. Log-uniform."""
    radius: span(0.05, 0.45) = (0.15, 0.4)
    """Circular: blast-wave radius R, fraction of the domain."""
    max_lattice: int = Field(1, ge=1, le=3)
    """Planar: shock normal is a lattice direction n with max(|ny|, |nx|) ≤ this (period 1/|n|)."""


class Shocks(NamedTuple):
    """The shock of each sample and channel, every field [B, C]: ``circular`` (bool; else planar), blast
    centre ``cy, cx``, planar lattice normal ``ny, nx`` (float64, the shock lines are n·r + cx ≡ 0), blast
    ``radius`` and shock ``width``."""

    circular: torch.Tensor
    cy: torch.Tensor
    cx: torch.Tensor
    ny: torch.Tensor
    nx: torch.Tensor
    radius: torch.Tensor
    width: torch.Tensor


def shock_geometry(p: ShockParams, rng: BatchRandom, channels: int, device: torch.device) -> Shocks:
    """The shocks of :func:`shock_front_raw` (every draw it makes)."""
    c = channels
    kind = draw_choice(rng, p.geometries, c)
    w = draw(rng, p.width, c, log=True)
    radius = draw(rng, p.radius, c)
    cy, cx = rng.uniform64(c), rng.uniform64(c)
    ny, nx = random_lattice_direction(rng, p.max_lattice, c)
    names = ["planar", "circular"]
    circular = torch.tensor([names.index(g) for g in p.geometries], device=device)[kind] == 1
    return Shocks(circular, cy, cx, ny, nx, radius, w)


@register(
    "shock_front",
    tier=3,
    params=ShockParams,
    description="Viscous Burgers shocks of thickness w: periodic sawtooth trains or circular blast waves.",
)
def shock_front_raw(p: ShockParams, rng: BatchRandom, channels: int, grid: int, device: torch.device) -> torch.Tensor:
    """Burgers-like shocks (:func:`shock_geometry`): u = 2ξ - tanh(ξ/(|n| w)) (periodic sawtooth,
    ξ = wrapped n·r + φ) or u = (d/R)·(1 - tanh((d - R)/w))/2 (blast wave: linear ramp, then a jump to 0 at
    radius R). Returns [B, C, H, W]."""
    circular, cy, cx, ny, nx, radius, w = shock_geometry(p, rng, channels, device)
    xi = lattice_coordinate(ny, nx, cx, grid)
    norm = torch.sqrt(ny**2 + nx**2)[..., None, None]
    planar = 2.0 * xi - torch.tanh(xi / (norm * w[..., None, None]))
    d = distance(cy, cx, grid)
    r = radius[..., None, None]
    blast = (d / r) * 0.5 * (1.0 - torch.tanh((d - r) / w[..., None, None]))
    return torch.where(circular[..., None, None], blast, planar).float()


# --------------------------------------------------------------------------------------------------
class GeneExpressionParams(ICParams):
    cells_per_side: ispan(2, 64) = (6, 16)
    """Tissue: Voronoi cells around one jittered seed per cell of an n × n lattice (n per sample)."""
    hill: span(1.0, 16.0) = (2.0, 8.0)
    """Hill coefficient h of each gene's response m^h / (K^h + m^h) to the morphogen m ∈ [0, 1]."""
    noise_cv: span(0.0, 2.0) = (0.1, 0.5)
    """Cell-to-cell expression noise: coefficient of variation of a mean-1 log-normal factor."""


def voronoi_cells(jy: torch.Tensor, jx: torch.Tensor, n: torch.Tensor, grid: int) -> torch.Tensor:
    """Cell id (seed index ``iy * n_max + ix``) of every pixel: [B, H, W] int64.

    Seed (iy, ix) sits at ((iy + jy) / n, (ix + jx) / n) with jitter ``jy, jx`` [B, n_max, n_max] in
    [0.2, 0.8); only the first n × n seeds are used (n [B] per sample). With that jitter range the
    nearest seed of a pixel lies in the 3 × 3 lattice cells around its own, so 9 candidates suffice;
    candidate tables are built per lattice cell (small) and gathered once per pixel (periodic).
    """
    b, n_max = jy.shape[0], jy.shape[1]
    dev = jy.device
    y, x = coords(grid, dev)
    nn = n.double()[:, None, None]
    gy, gx = (y * nn).expand(b, grid, grid), (x * nn).expand(b, grid, grid)  # lattice coordinates
    cy0, cx0 = torch.floor(gy), torch.floor(gx)
    fy, fx = (gy - cy0).float().reshape(b, -1), (gx - cx0).float().reshape(b, -1)
    own = (cy0.long() * n_max + cx0.long()).reshape(b, -1)  # [B, HW]
    lat = torch.arange(n_max, device=dev)
    nl = n[:, None, None]
    d2, ids = [], []
    for oy in (-1, 0, 1):
        for ox in (-1, 0, 1):
            wy = torch.remainder(lat[None, :, None] + oy, nl)  # [B, n_max, 1]
            wx = torch.remainder(lat[None, None, :] + ox, nl)  # [B, 1, n_max]
            sid = (wy * n_max + wx).reshape(b, -1)  # neighbour seed of each lattice cell
            ty = (oy + jy.reshape(b, -1).gather(1, sid)).float()  # its offset from the cell corner
            tx = (ox + jx.reshape(b, -1).gather(1, sid)).float()
            d2.append((ty.gather(1, own) - fy) ** 2 + (tx.gather(1, own) - fx) ** 2)
            ids.append(sid)
    best = torch.stack(d2, dim=1).argmin(dim=1)  # [B, HW] in 0..8
    table = torch.stack(ids, dim=1).reshape(b, -1)  # [B, 9 * n_max²]
    return table.gather(1, best * n_max * n_max + own).reshape(b, grid, grid)


def gene_expression_tissue(
    p: GeneExpressionParams, rng: BatchRandom, channels: int, grid: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The tissue of :func:`gene_expression_raw` (its draws, all but the expression noise): the cell id of
    every pixel [B, H, W] int64 (:func:`voronoi_cells`) and the noise-free expression of every gene in every
    cell [B, C, n_max²] float64, indexed by cell id.

    Gene c responds with threshold K_c = (c + 1)/(C + 1) to the morphogen at its cell's seed (a 'French
    flag': higher thresholds switch on closer to the source).
    """
    n_max = p.cells_per_side[1]
    n = draw_int(rng, p.cells_per_side)
    jy = 0.2 + 0.6 * rng.uniform64(n_max, n_max)
    jx = 0.2 + 0.6 * rng.uniform64(n_max, n_max)
    ny, nx = random_lattice_direction(rng, 1)
    phase = rng.uniform64()
    hill = draw(rng, p.hill)

    cell = voronoi_cells(jy, jx, n, grid)  # [B, H, W]
    seed_y = (torch.arange(n_max, device=device)[None, :, None] + jy) / n.double()[:, None, None]
    seed_x = (torch.arange(n_max, device=device)[None, None, :] + jx) / n.double()[:, None, None]
    s = wrap(ny[:, None, None] * seed_y + nx[:, None, None] * seed_x + phase[:, None, None])
    m = (1.0 - 2.0 * s.abs()).reshape(rng.batch, 1, -1)  # morphogen at each seed, in [0, 1]
    k = ((torch.arange(channels, device=device, dtype=torch.float64) + 1) / (channels + 1))[None, :, None]
    h = hill[:, None, None]
    return cell, m**h / (k**h + m**h)


@register(
    "gene_expression",
    tier=3,
    params=GeneExpressionParams,
    description="Cell-wise gene expression on a Voronoi tissue: Hill responses to a morphogen plus noise.",
    channels="genes with increasing thresholds K_c = (c+1)/(C+1) on one tissue and gradient",
)
def gene_expression_raw(
    p: GeneExpressionParams, rng: BatchRandom, channels: int, grid: int, device: torch.device
) -> torch.Tensor:
    """Piecewise-constant expression of C genes over a Voronoi tissue reading one morphogen gradient
    (:func:`gene_expression_tissue`), times a log-normal cell-to-cell factor. Returns [B, C, H, W]."""
    cell, mean = gene_expression_tissue(p, rng, channels, grid, device)
    cv = draw(rng, p.noise_cv)
    z = white_noise(rng, channels, p.cells_per_side[1] ** 2).double()
    s2 = torch.log1p(cv**2)[:, None, None]
    expr = mean * torch.exp(torch.sqrt(s2) * z - s2 / 2)
    idx = cell.reshape(rng.batch, 1, -1).expand(-1, channels, -1)
    return expr.gather(2, idx).reshape(rng.batch, channels, grid, grid).float()

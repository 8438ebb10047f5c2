"""The defining property of each IC type, measured on its unstandardised core with a tolerance.

Parameters are pinned (span low == high) where the property depends on them; the measurement is done
independently of the construction wherever possible (spectra, fitted widths, zero crossings, parity
checks, flood fills).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spinlock.ics.spectral import radial_power_spectrum, spectral_gradient
from spinlock.ics.types import tier0, tier1, tier2, tier3, tier4
from spinlock.rng import BatchRandom, derive_key

CPU = torch.device("cpu")


def keys(n: int, stream: str = "ics-properties") -> BatchRandom:
    return BatchRandom([derive_key(11, stream, i) for i in range(n)])


def log_slope(k: torch.Tensor, power: torch.Tensor, lo: float, hi: float) -> float:
    sel = (k >= lo) & (k <= hi)
    return float(np.polyfit(np.log(k[sel].numpy()), np.log(power[sel].numpy()), 1)[0])


def peak_shell(x: torch.Tensor) -> int:
    k, power = radial_power_spectrum(x - x.mean(dim=(-2, -1), keepdim=True))
    mean = power.reshape(-1, power.shape[-1]).mean(0)
    return int(k[1:][torch.nan_to_num(mean[1:]).argmax()])


def tanh_width(u: torch.Tensor) -> float:
    """Median of (1 - u²)/|∇u| over the interface |u| < 0.5: equals w for u = tanh(d/w), |∇d| = 1."""
    gy, gx = spectral_gradient(u.double())
    grad = torch.sqrt(gy**2 + gx**2)
    sel = u.abs() < 0.5
    return float(((1 - u.double() ** 2) / grad)[sel].median())


def periodic_sample(field: np.ndarray, py: np.ndarray, px: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of a periodic [H, W] field at domain positions (y, x)."""
    g = field.shape[0]
    gy, gx = np.mod(py, 1.0) * g, np.mod(px, 1.0) * g
    y0, x0 = np.floor(gy).astype(int), np.floor(gx).astype(int)
    fy, fx = gy - y0, gx - x0
    y1, x1 = (y0 + 1) % g, (x0 + 1) % g
    y0, x0 = y0 % g, x0 % g
    return (
        field[y0, x0] * (1 - fy) * (1 - fx)
        + field[y0, x1] * (1 - fy) * fx
        + field[y1, x0] * fy * (1 - fx)
        + field[y1, x1] * fy * fx
    )


def crossing_period(profile: np.ndarray, step: float) -> float:
    """Period of an oscillating profile from its mean-crossings (two per period), linearly interpolated."""
    v = profile - profile.mean()
    i = np.nonzero(np.sign(v[:-1]) * np.sign(v[1:]) < 0)[0]
    pos = (i + v[i] / (v[i] - v[i + 1])) * step
    return float(2 * (pos[-1] - pos[0]) / (len(pos) - 1))


def wrapped_moments(density: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre (circular mean) and covariance [2, 2] of a periodic density [H, W] in domain units."""
    g = density.shape[-1]
    t = torch.arange(g, dtype=torch.float64) / g
    w = density.double() / density.sum()
    cy = torch.angle((w.sum(1) * torch.exp(2j * math.pi * t)).sum()) / (2 * math.pi) % 1.0
    cx = torch.angle((w.sum(0) * torch.exp(2j * math.pi * t)).sum()) / (2 * math.pi) % 1.0
    dy = (t[:, None] - cy + 0.5) % 1.0 - 0.5
    dx = (t[None, :] - cx + 0.5) % 1.0 - 0.5
    cov = torch.tensor(
        [[(w * dy * dy).sum(), (w * dy * dx).sum()], [(w * dx * dy).sum(), (w * dx * dx).sum()]], dtype=torch.float64
    )
    return torch.stack([cy, cx]), cov


def test_radial_power_spectrum_of_a_sinusoid():
    g = 32
    t = torch.arange(g, dtype=torch.float64) / g
    x = torch.cos(2 * math.pi * (3 * t[:, None] + 4 * t[None, :]))
    k, power = radial_power_spectrum(x)
    assert int(k[torch.nan_to_num(power).argmax()]) == 5
    counts = torch.zeros(g // 2 + 1)
    kk = torch.sqrt(torch.fft.fftfreq(g, 1 / g)[:, None] ** 2 + torch.fft.fftfreq(g, 1 / g)[None, :] ** 2)
    counts.index_add_(0, torch.round(kk).long().clamp_max(g // 2).flatten(), torch.ones(g * g))
    assert float(power[5] * counts[5]) == pytest.approx(0.5, rel=1e-9)  # Parseval: variance of cos = 1/2


# ---------------------------------------------------------------- tier 0
@pytest.mark.parametrize("beta", [2.0, 3.5])
def test_grf_power_law_slope(beta):
    x = tier0.gaussian_random_field_raw(tier0.GRFParams(beta=beta), keys(32), 1, 64, CPU)
    k, power = radial_power_spectrum(x)
    assert -log_slope(k, power.mean((0, 1)), 3, 20) == pytest.approx(beta, abs=0.1)


def test_structured_is_binary_with_configured_geometry():
    x = tier0.structured_raw(tier0.StructuredParams(), keys(8), 3, 64, CPU)
    assert set(torch.unique(x).tolist()) == {0.0, 1.0}
    assert ((x.amax((-2, -1)) == 1) & (x.amin((-2, -1)) == 0)).all()
    stripes = tier0.structured_raw(
        tier0.StructuredParams(patterns=["stripes"], wavelength=(0.125, 0.125)), keys(4), 1, 64, CPU
    )
    assert peak_shell(stripes) in (7, 8, 9)
    blobs = tier0.structured_raw(tier0.StructuredParams(patterns=["blobs"], fill=(0.35, 0.35)), keys(4), 2, 64, CPU)
    assert torch.allclose(blobs.mean((-2, -1)).double(), torch.full((4, 2), 0.35, dtype=torch.float64), atol=1e-3)
    disc = tier0.structured_raw(
        tier0.StructuredParams(patterns=["circles"], count=(1, 1), radius=(0.2, 0.2)), keys(4), 1, 64, CPU
    )
    assert torch.allclose(
        disc.mean((-2, -1)).double(), torch.full((4, 1), math.pi * 0.04, dtype=torch.float64), atol=0.006
    )


def test_mixed_partition_fraction_and_texture_contrast():
    p = tier0.MixedParams(rough_fraction=(0.4, 0.4), beta_smooth=(4.0, 4.0), beta_rough=(1.0, 1.0))
    x = tier0.mixed_raw(p, keys(4), 1, 64, CPU)
    _, _, mask = tier0.mixed_layers(p, keys(4), 1, 64, CPU)
    assert torch.allclose((mask > 0.5).double().mean((-2, -1)), torch.full((4, 1), 0.4, dtype=torch.float64), atol=0.01)
    lap = x.roll(1, -1) + x.roll(-1, -1) + x.roll(1, -2) + x.roll(-1, -2) - 4 * x
    for b in range(4):
        rough = lap[b][mask[b].expand_as(x[b]) > 0.9].pow(2).mean()
        smooth = lap[b][mask[b].expand_as(x[b]) < 0.1].pow(2).mean()
        assert rough > 10 * smooth


def test_multiscale_octave_variance_ratio():
    p = tier0.MultiscaleParams(octaves=4, base_wavenumber=(2.0, 2.0), decay=(0.5, 0.5))
    x = tier0.multiscale_grf_raw(p, keys(4), 2, 64, CPU).double()
    spec = torch.fft.fft2(x).abs() ** 2
    f = torch.fft.fftfreq(64, 1 / 64, dtype=torch.float64)
    k2 = f[:, None] ** 2 + f[None, :] ** 2  # exact: band j is |k|² in [4·4^j/2, 4·4^j·2), edges included
    energy = [spec[..., (k2 >= 2 * 4**j) & (k2 < 8 * 4**j)].sum(-1) for j in range(4)]
    for j in range(1, 4):
        assert torch.allclose(energy[j] / energy[0], torch.full_like(energy[0], 0.5**j), rtol=1e-6)


def test_localized_single_blob_width():
    p = tier0.LocalizedParams(count=(1, 1), width=(0.05, 0.05), signed=False)
    x = tier0.localized_raw(p, keys(4), 1, 64, CPU)
    for b in range(4):
        _, cov = wrapped_moments(x[b, 0])
        assert math.sqrt(cov[0, 0]) == pytest.approx(0.05, rel=0.03)
        assert math.sqrt(cov[1, 1]) == pytest.approx(0.05, rel=0.03)


def test_composite_signal_to_noise_ratio():
    p = tier0.CompositeParams(waves=(2, 2), wavenumber=(6.0, 6.0), snr=(3.0, 3.0), noise_beta=(2.0, 2.0))
    x = tier0.composite_raw(p, keys(8), 1, 64, CPU)
    ky, kx, _ = tier0.composite_modes(p, keys(8), 1, 64, CPU)
    spec = torch.fft.fft2(x.double()).abs() ** 2
    fractions = []
    for b in range(8):
        modes = {(int(ky[b, 0, j]) % 64, int(kx[b, 0, j]) % 64) for j in range(2)}
        modes |= {((-a) % 64, (-c) % 64) for a, c in modes}
        on = sum(spec[b, 0, a, c] for a, c in modes)
        fractions.append(float(on / spec[b, 0].sum()))
    assert np.mean(fractions) == pytest.approx(0.75, abs=0.02)
    assert np.allclose(fractions, 0.75, atol=0.05)


def test_heavy_tailed_slope_and_tails():
    p = tier0.HeavyTailedParams(beta=3.0)
    x = tier0.heavy_tailed_raw(p, keys(32), 1, 64, CPU)
    k, power = radial_power_spectrum(x)
    assert -log_slope(k, power.mean((0, 1)), 3, 20) == pytest.approx(3.0, abs=0.15)
    z = (x - x.mean((-2, -1), keepdim=True)) / x.std((-2, -1), keepdim=True)
    assert float(z.pow(4).mean((-2, -1)).median()) > 4.5
    g = tier0.gaussian_random_field_raw(tier0.GRFParams(beta=3.0), keys(32), 1, 64, CPU)
    zg = (g - g.mean((-2, -1), keepdim=True)) / g.std((-2, -1), keepdim=True)
    assert float(zg.pow(4).mean((-2, -1)).median()) < 3.6  # a Gaussian field's kurtosis is ~3


# ---------------------------------------------------------------- tier 1
def test_wave_packet_envelope_and_carrier():
    p = tier1.WavePacketParams(packets=(1, 1), wavenumber=(10.0, 10.0), width=(0.08, 0.08), aspect=(1.0, 1.0))
    psi = tier1.wave_packet_psi(p, keys(4), 64, CPU)
    for b in range(4):
        _, cov = wrapped_moments(psi[b].abs() ** 2)
        assert torch.allclose(
            torch.sqrt(torch.linalg.eigvalsh(cov)), torch.full((2,), 0.08, dtype=torch.float64), rtol=0.03
        )
        spec = torch.fft.fft2(psi[b]).abs() ** 2
        f = torch.fft.fftfreq(64, 1 / 64, dtype=torch.float64)
        iy, ix = divmod(int(spec.argmax()), 64)
        assert abs(math.hypot(f[iy], f[ix]) - 10.0) <= 0.71


@pytest.mark.parametrize("pattern", ["spots", "stripes", "labyrinth"])
def test_turing_dominant_wavelength(pattern):
    p = tier1.TuringParams(patterns=[pattern], wavelength=(0.125, 0.125), sharpness=(2.0, 2.0))
    x = tier1.turing_pattern_raw(p, keys(6), 1, 64, CPU)
    assert peak_shell(x) in (7, 8, 9)


def test_thermal_gradient_ramp_variance_fraction():
    for fl, expected in ((0.0, 96 / math.pi**4), (0.3, 96 / math.pi**4 / 1.09)):
        p = tier1.ThermalParams(fluctuation=(fl, fl), fluctuation_scale=(0.01, 0.01))
        x = tier1.thermal_gradient_raw(p, keys(8), 1, 64, CPU).double()
        spec = torch.fft.fft2(x - x.mean((-2, -1), keepdim=True)).abs() ** 2
        flat = spec.flatten(-2)
        top = 2 * flat.max(-1).values / flat.sum(-1)  # the fundamental and its conjugate
        assert torch.allclose(top, torch.full_like(top, expected), atol=0.02)


def test_morphogen_exponential_decay_length():
    for source in ("point", "line"):
        p = tier1.MorphogenParams(sources=[source], decay_length=(0.1, 0.1), noise=(0.0, 0.0))
        c = tier1.morphogen_gradient_raw(p, keys(4), 1, 64, CPU)
        d = tier1.morphogen_distance(p, keys(4), 1, 64, CPU)
        sel = d < 0.4
        slope = np.polyfit(d[sel].numpy(), np.log(c.double()[sel].numpy()), 1)[0]
        assert -1.0 / slope == pytest.approx(0.1, rel=0.01)
        assert float(c.amax()) <= 1.0


@pytest.mark.parametrize("geometry,tol", [("planar", 0.05), ("circular", 0.05), ("irregular", 0.1)])
def test_reaction_front_tanh_width(geometry, tol):
    p = tier1.ReactionFrontParams(geometries=[geometry], width=(0.03, 0.03))
    u = tier1.reaction_front_raw(p, keys(2), 1, 128, CPU)
    assert tanh_width(u) == pytest.approx(0.03, rel=tol)


# ---------------------------------------------------------------- tier 2
def test_light_cone_causal_support_and_doppler():
    p = tier2.LightConeParams(speed=(0.6, 0.6), radius=(0.4, 0.4), wavelength=(0.08, 0.08))
    x = tier2.light_cone_raw(p, keys(2), 1, 128, CPU)
    geo = tier2.light_cone_emitter(p, keys(2))
    g = 128
    t = torch.arange(g, dtype=torch.float64) / g
    gamma, beta, lam, big_t = 1.25, 0.6, 0.08, 0.4
    for b in range(2):
        dy = (t[:, None] - geo.apex_y[b] + 0.5) % 1 - 0.5
        dx = (t[None, :] - geo.apex_x[b] + 0.5) % 1 - 0.5
        d = torch.sqrt(dy**2 + dx**2)
        assert (x[b, 0][d > big_t] == 0).all()  # nothing outside the light cone
        assert (x[b, 0][d < big_t - 2 / g] != 0).double().mean() > 0.95
        ay, ax, ang = float(geo.apex_y[b]), float(geo.apex_x[b]), float(geo.angle[b])
        field = x[b, 0].double().numpy()
        step = 2e-4
        for s0, s1, expected in (
            (beta * big_t + 0.02, big_t - 0.01, gamma * lam * (1 - beta)),
            (-big_t + 0.01, -0.02, gamma * lam * (1 + beta)),
        ):
            s = np.arange(s0, s1, step)
            profile = periodic_sample(field, ay + s * math.sin(ang), ax + s * math.cos(ang))
            assert crossing_period(profile, step) == pytest.approx(expected, rel=0.05)


def test_critical_fluctuation_ornstein_zernike_spectrum():
    xi = 0.05
    p = tier2.CriticalParams(correlation_length=(xi, xi))
    x = tier2.critical_fluctuation_raw(p, keys(32), 1, 64, CPU)
    k, power = radial_power_spectrum(x)
    sel = (k >= 1) & (k <= 24)
    q2 = (2 * math.pi * k[sel]) ** 2
    slope, intercept = np.polyfit(q2.numpy(), (1 / power.mean((0, 1))[sel]).numpy(), 1)  # 1/P = A(q² + ξ⁻²)
    assert math.sqrt(slope / intercept) == pytest.approx(xi, rel=0.1)


def test_phase_boundary_allen_cahn_width_and_fraction():
    p = tier2.PhaseBoundaryParams(epsilon=(0.02, 0.02), domain_scale=(0.15, 0.15), fraction=(0.4, 0.4))
    u = tier2.phase_boundary_raw(p, keys(2), 1, 128, CPU)
    assert tanh_width(u) == pytest.approx(math.sqrt(2) * 0.02, rel=0.08)
    assert torch.allclose((u > 0).double().mean((-2, -1)), torch.full((2, 1), 0.4, dtype=torch.float64), atol=0.01)


@pytest.mark.parametrize("mode", ["spiral", "target"])
def test_bz_wave_spacing(mode):
    p = tier2.BZParams(modes=[mode], wavelength=(0.1, 0.1), sharpness=(0.0, 0.0), arms=(1, 1), pairs=(1, 1))
    x = tier2.bz_reaction_raw(p, keys(6), 1, 64, CPU)
    assert peak_shell(x) in (9, 10, 11)


def test_vortex_phase_is_periodic_and_winds_by_its_charge():
    r = keys(2, "vortex")
    cy, cx = r.uniform64(4), r.uniform64(4)
    charge = torch.tensor([[1.0, -1.0, 2.0, -2.0], [1.0, 1.0, -1.0, -1.0]], dtype=torch.float64)
    t = torch.linspace(0, 1, 40, dtype=torch.float64)
    ends = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    along_y = tier2.vortex_phase(cy, cx, charge, ends, t[None, :])
    along_x = tier2.vortex_phase(cy, cx, charge, t[:, None], ends.T)
    assert (torch.exp(1j * along_y[:, 0]) - torch.exp(1j * along_y[:, 1])).abs().max() < 1e-9
    assert (torch.exp(1j * along_x[..., 0]) - torch.exp(1j * along_x[..., 1])).abs().max() < 1e-9
    th = torch.linspace(0, 2 * math.pi, 121, dtype=torch.float64)
    for b in range(2):
        for j in range(4):
            ys, xs = cy[b, j] + 0.005 * torch.sin(th), cx[b, j] + 0.005 * torch.cos(th)
            grid_phase = tier2.vortex_phase(cy[b : b + 1], cx[b : b + 1], charge[b : b + 1], ys[:, None], xs[None, :])
            phase = torch.diagonal(grid_phase[0])  # the loop points (ys[i], xs[i])
            steps = torch.remainder(phase.diff() + math.pi, 2 * math.pi) - math.pi
            assert float(steps.sum() / (2 * math.pi)) == pytest.approx(float(charge[b, j]), abs=1e-6)


def _relative_entropy_bits(sym: torch.Tensor, pref: torch.Tensor, levels: int) -> float:
    counts = torch.bincount(((sym - pref) % levels).flatten(), minlength=levels).double()
    prob = counts / counts.sum()
    prob = prob[prob > 0]
    return float(-(prob * torch.log2(prob)).sum())


def _symbols(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Symbol s of each level -1 + 2s/(K-1) (exact: the levels are K apart by 2/(K-1) ≫ float32 rounding)."""
    return torch.round((x.double() + 1) * (levels - 1) / 2).long()


def test_shannon_entropy_matches_its_map():
    p = tier2.EntropyParams(levels=8, entropy=(0.5, 0.5))
    x = tier2.shannon_entropy_raw(p, keys(4), 2, 64, CPU)
    assert set(torch.unique(x).tolist()) <= {-1 + 2 * s / 7 for s in range(8)} | {
        float(np.float32(-1 + 2 * s / 7)) for s in range(8)
    }
    _, pref = tier2.entropy_maps(p, keys(4), 2, 64)
    assert _relative_entropy_bits(_symbols(x, 8), pref, 8) == pytest.approx(1.5, abs=0.03)
    varied = tier2.EntropyParams(levels=8, entropy=(0.0, 1.0))
    sym = _symbols(tier2.shannon_entropy_raw(varied, keys(2), 1, 128, CPU), 8)
    target, pref = tier2.entropy_maps(varied, keys(2), 1, 128)
    est, tgt = [], []
    for b in range(2):
        for i in range(0, 128, 8):
            for j in range(0, 128, 8):
                block = (slice(b, b + 1), 0, slice(i, i + 8), slice(j, j + 8))
                est.append(_relative_entropy_bits(sym[block], pref[block], 8))
                tgt.append(float(target[block].mean()))
    assert np.corrcoef(est, tgt)[0, 1] > 0.9


# ---------------------------------------------------------------- tier 3
def test_interference_plane_fringe_spacing():
    p = tier3.InterferenceParams(geometries=["plane"], sources=(2, 2), wavelength=(1 / 16, 1 / 16), angle=(60.0, 60.0))
    x = tier3.interference_raw(p, keys(4), 1, 64, CPU)
    geo = tier3.interference_sources(p, keys(4), 64, CPU)
    spec = torch.fft.fft2(x.double() - x.double().mean((-2, -1), keepdim=True)).abs() ** 2
    for b in range(4):
        dk = (int(geo.ky[b, 1] - geo.ky[b, 0]), int(geo.kx[b, 1] - geo.kx[b, 0]))
        assert abs(math.hypot(*dk) - 2 * 16 * math.sin(math.radians(30))) <= 1.5  # spacing λ / (2 sin(α/2))
        iy, ix = divmod(int(spec[b, 0].argmax()), 64)
        assert (iy, ix) in {(dk[0] % 64, dk[1] % 64), ((-dk[0]) % 64, (-dk[1]) % 64)}


def test_interference_point_sources_fringe_period_on_axis():
    p = tier3.InterferenceParams(geometries=["point"], sources=(2, 2), wavelength=(0.08, 0.08), separation=(0.3, 0.3))
    x = tier3.interference_raw(p, keys(2), 1, 128, CPU)
    geo = tier3.interference_sources(p, keys(2), 128, CPU)
    for b in range(2):
        y0, x0 = float(geo.sy[b, 0]), float(geo.sx[b, 0])
        vy = (float(geo.sy[b, 1]) - y0 + 0.5) % 1 - 0.5
        vx = (float(geo.sx[b, 1]) - x0 + 0.5) % 1 - 0.5
        s = np.arange(0.03, 0.27, 2e-4) / 0.3
        profile = periodic_sample(x[b, 0].double().numpy(), y0 + s * vy, x0 + s * vx)
        window = 200  # one fringe period (0.04 / 2e-4): its moving average is the slowly varying background
        fringes = (profile - np.convolve(profile, np.ones(window) / window, mode="same"))[window:-window]
        assert crossing_period(fringes, 2e-4) == pytest.approx(0.04, rel=0.05)  # λ/2 between two sources


@pytest.mark.parametrize("arrangement", ["uniform", "clustered"])
def test_cell_population_hard_core(arrangement):
    p = tier3.CellPopulationParams(
        arrangements=[arrangement], candidates=(80, 80), min_spacing=(0.06, 0.06), radius_ratio=(0.8, 0.8)
    )
    x = tier3.cell_population_raw(p, keys(6), 2, 64, CPU)
    cells = tier3.cell_population_cells(p, keys(6), CPU)
    for b in range(6):
        keep = cells.keep[b]
        cy, cx = cells.cy[b][keep], cells.cx[b][keep]
        assert keep.sum() >= 2
        dy = (cy[:, None] - cy[None, :] + 0.5) % 1 - 0.5
        dx = (cx[:, None] - cx[None, :] + 0.5) % 1 - 0.5
        d = torch.sqrt(dy**2 + dx**2) + torch.eye(len(cy), dtype=torch.float64)
        assert float(d.min()) >= 0.06
    assert float(x[:, 0].max()) <= 1.0 + 1e-6  # discs never overlap


def test_cell_population_clustering_shortens_neighbour_distances():
    def mean_nn(arrangement):
        p = tier3.CellPopulationParams(
            arrangements=[arrangement],
            candidates=(60, 60),
            min_spacing=(0.03, 0.03),
            clusters=(3, 3),
            cluster_spread=(0.05, 0.05),
        )
        cells = tier3.cell_population_cells(p, keys(8), CPU)
        out = []
        for b in range(8):
            keep = cells.keep[b]
            cy, cx = cells.cy[b][keep], cells.cx[b][keep]
            d = torch.sqrt(((cy[:, None] - cy + 0.5) % 1 - 0.5) ** 2 + ((cx[:, None] - cx + 0.5) % 1 - 0.5) ** 2)
            out.append(float((d + 9 * torch.eye(len(cy), dtype=torch.float64)).min(1).values.mean()))
        return np.mean(out)

    assert mean_nn("clustered") < 0.8 * mean_nn("uniform")


def test_chromatin_symmetry_decay_and_compartments():
    base = dict(compartment_strength=(0.0, 0.0), tad_strength=(0.0, 0.0), noise=(0.1, 0.1), decay=(1.0, 1.0))
    x = tier3.chromatin_domain_raw(tier3.ChromatinParams(**base), keys(4), 1, 64, CPU).double()
    assert torch.equal(x, x.transpose(-1, -2))
    s = np.arange(1, 32)
    diag = [float(torch.diagonal(x, offset=int(k), dim1=-2, dim2=-1).mean()) for k in s]
    assert np.polyfit(np.log1p(s), diag, 1)[0] == pytest.approx(-1.0, abs=0.03)

    comp = dict(base, compartment_strength=(0.5, 0.5), domains=(8, 8))
    x = tier3.chromatin_domain_raw(tier3.ChromatinParams(**comp), keys(4), 1, 64, CPU)
    architecture = tier3.chromatin_architecture(tier3.ChromatinParams(**comp), keys(4), 1, 64, CPU)
    n = 64
    i = torch.arange(n)
    sep = (i[:, None] - i[None, :]).abs()
    dist = torch.minimum(sep, n - sep)
    for b in range(4):
        labels = architecture.labels[b, 0]
        if labels.abs().sum() == abs(labels.sum()):
            continue  # every TAD in one compartment: nothing to recover
        contacts = torch.exp(x[b, 0].double())
        expected = torch.stack([contacts[dist == d].mean() for d in range(n // 2 + 1)])
        oe = contacts / expected[dist]
        corr = torch.corrcoef(oe)
        vec = torch.linalg.eigh(corr).eigenvectors[:, -1]
        assert abs(float(torch.corrcoef(torch.stack([vec, labels.double()]))[0, 1])) > 0.9


def test_shock_front_width_and_jump():
    p = tier3.ShockParams(geometries=["circular"], width=(0.02, 0.02), radius=(0.3, 0.3))
    u = tier3.shock_front_raw(p, keys(2), 1, 128, CPU)
    geo = tier3.shock_geometry(p, keys(2), 1, CPU)
    t = torch.arange(128, dtype=torch.float64) / 128
    for b in range(2):
        dy = (t[:, None] - geo.cy[b, 0] + 0.5) % 1 - 0.5
        dx = (t[None, :] - geo.cx[b, 0] + 0.5) % 1 - 0.5
        d = torch.sqrt(dy**2 + dx**2)
        v = u[b, 0].double() / (d / 0.3)  # remove the ramp: what is left is the jump profile
        sel = (v > 0.05) & (v < 0.95) & ((d - 0.3).abs() < 0.1)
        slope, intercept = np.polyfit(d[sel].numpy(), np.arctanh(1 - 2 * v[sel].numpy()), 1)
        assert 1 / slope == pytest.approx(0.02, rel=0.05)
        assert -intercept / slope == pytest.approx(0.3, abs=1 / 128)
    p = tier3.ShockParams(geometries=["planar"], width=(0.01, 0.01), max_lattice=2)
    u = tier3.shock_front_raw(p, keys(4), 1, 128, CPU)
    geo = tier3.shock_geometry(p, keys(4), 1, CPU)
    for b in range(4):
        ny, nx, phase = (float(v[b, 0]) for v in (geo.ny, geo.nx, geo.cx))
        xi = (ny * t[:, None] + nx * t[None, :] + phase + 0.5) % 1 - 0.5
        jump = 2 * xi - u[b, 0].double()  # remove the ramp (slope 2 per unit of n·r): tanh(x / w) is left
        x_normal = xi / math.hypot(ny, nx)
        sel = (jump.abs() < 0.9) & (x_normal.abs() < 0.05)
        slope = np.polyfit(x_normal[sel].numpy(), np.arctanh(jump[sel].numpy()), 1)[0]
        assert 1 / slope == pytest.approx(0.01, rel=0.05)


def test_gene_expression_cells_noise_and_french_flag():
    p = tier3.GeneExpressionParams(noise_cv=(0.3, 0.3), hill=(4.0, 4.0), cells_per_side=(10, 10))
    x = tier3.gene_expression_raw(p, keys(4), 3, 64, CPU)
    cells, cell_mean = tier3.gene_expression_tissue(p, keys(4), 3, 64, CPU)
    ratios = []
    for b in range(4):
        cell = cells[b].flatten()
        for c in range(3):
            v, m = x[b, c].flatten().double(), cell_mean[b, c][cell]  # noise-free expression of each pixel
            lo = torch.full((int(cell.max()) + 1,), math.inf, dtype=torch.float64).scatter_reduce(0, cell, v, "amin")
            hi = torch.full_like(lo, -math.inf).scatter_reduce(0, cell, v, "amax")
            present = torch.isfinite(lo)
            assert torch.allclose(lo[present], hi[present])  # one value per cell
            ids = torch.unique(cell)
            first = torch.zeros_like(lo, dtype=torch.long).scatter_(0, cell, torch.arange(len(cell)))
            mean = m[first[ids]]
            ratios.append((v[first[ids]] / mean)[mean > 0.05])
    r = torch.cat(ratios)
    assert float(r.std() / r.mean()) == pytest.approx(0.3, rel=0.12)
    clean = tier3.gene_expression_raw(tier3.GeneExpressionParams(noise_cv=(0.0, 0.0)), keys(4), 3, 64, CPU)
    level = clean.mean((-2, -1))
    assert (level[:, 0] > level[:, 1]).all() and (level[:, 1] > level[:, 2]).all()  # thresholds rise with c


# ---------------------------------------------------------------- tier 4
def test_coherent_state_minimum_uncertainty():
    p = tier4.CoherentParams(kinds=["coherent"], oscillator_length=(0.06, 0.06), momentum=(6.0, 6.0))
    psi = tier4.coherent_state_psi(p, keys(4), 64, CPU)
    f = torch.fft.fftfreq(64, 1 / 64, dtype=torch.float64) * 2 * math.pi  # p = 2πk (ħ = 1, unit domain)
    for b in range(4):
        _, cov = wrapped_moments(psi[b].abs() ** 2)
        mom = torch.fft.fft2(psi[b]).abs() ** 2
        mom = mom / mom.sum()
        for axis, pk in ((0, f[:, None]), (1, f[None, :])):
            dp = math.sqrt(float((mom * pk**2).sum() - (mom * pk).sum() ** 2))
            dx = math.sqrt(float(cov[axis, axis]))
            assert dx == pytest.approx(0.06, rel=0.03)
            assert dx * dp == pytest.approx(0.5, rel=0.03)


@pytest.mark.parametrize("beta", [0.0, 0.8])
def test_relativistic_packet_lorentz_contraction(beta):
    p = tier4.RelativisticParams(speed=(beta, beta), rest_width=(0.08, 0.08))
    psi = tier4.relativistic_psi(p, keys(4), 64, CPU)
    geo = tier4.relativistic_packet(p, keys(4))
    for b in range(4):
        _, cov = wrapped_moments(psi[b].abs() ** 2)
        evals, evecs = torch.linalg.eigh(cov)
        assert math.sqrt(evals[0] / evals[1]) == pytest.approx(math.sqrt(1 - beta**2), abs=0.02)
        if beta > 0:  # the short axis is the direction of motion
            motion = torch.tensor([math.sin(geo.angle[b]), math.cos(geo.angle[b])], dtype=torch.float64)
            assert abs(float(evecs[:, 0] @ motion)) > 0.99


def test_mutual_information_exact_correlation():
    for channels, rho in ((5, 0.6), (2, 0.0)):
        p = tier4.MutualInfoParams(correlation=(rho, rho))
        x = tier4.mutual_information_raw(p, keys(3), channels, 32, CPU).double()
        for b in range(3):
            corr = torch.corrcoef(x[b].reshape(channels, -1))
            off = corr[~torch.eye(channels, dtype=torch.bool)]
            assert torch.allclose(off, torch.full_like(off, rho), atol=1e-4)


def test_regulatory_network_is_a_steady_state():
    p = tier4.RegulatoryParams(coupling=(0.9, 0.9))
    x = tier4.regulatory_network_raw(p, keys(2), 4, 32, CPU)
    w, u = tier4.regulatory_system(p, keys(2), 4, 32, CPU)
    u = u.reshape(2, 4, 32, 32)
    rows = w.abs().sum(-1)
    assert torch.allclose(rows[rows > 0], torch.full_like(rows[rows > 0], 0.9), atol=1e-6)
    residual = x - torch.tanh(torch.einsum("bij,bjhw->bihw", w, x) + u)
    assert float(residual.abs().max()) < 1e-4


def _periodic_component_size(occ: np.ndarray, start: int) -> int:
    g = occ.shape[0]
    flat = occ.ravel()
    seen = np.zeros_like(flat)
    stack, seen[start] = [start], True
    while stack:
        i = stack.pop()
        r, c = divmod(i, g)
        for j in (((r - 1) % g) * g + c, ((r + 1) % g) * g + c, r * g + (c - 1) % g, r * g + (c + 1) % g):
            if flat[j] and not seen[j]:
                seen[j] = True
                stack.append(j)
    return int(seen.sum())


def test_dla_single_connected_cluster_of_requested_size():
    p = tier4.DLAParams(size=(0.03, 0.03))
    x = tier4.dla_cluster_raw(p, keys(4), 1, 64, CPU)  # one channel: the bare occupancy
    assert set(torch.unique(x).tolist()) == {0.0, 1.0}
    target = round(0.03 * 64 * 64)
    for b in range(4):
        occ = x[b, 0].numpy().astype(bool)
        assert occ.sum() == target
        assert _periodic_component_size(occ, int(np.flatnonzero(occ)[0])) == target  # one connected cluster


def test_dla_screening_makes_branched_clusters():
    def gyration_ratio(screening):
        p = tier4.DLAParams(size=(0.03, 0.03), screening=(screening, screening))
        x = tier4.dla_cluster_raw(p, keys(4), 1, 128, CPU)  # one channel: the bare occupancy
        out = []
        for b in range(4):
            occ = x[b, 0].double()
            _, cov = wrapped_moments(occ)
            rg2 = float(cov.trace()) * 128**2
            out.append(math.sqrt(rg2 / (occ.sum().item() / (2 * math.pi))))  # compact disc: ratio 1
        return np.mean(out)

    eden, dla = gyration_ratio(0.0), gyration_ratio(16.0)
    assert dla > 1.4 and dla > 1.2 * eden


def test_error_correcting_code_alphabet_parity_and_flip_rate():
    p = tier4.CodeParams(symbol_size=(2, 2), flip_rate=(0.05, 0.05))
    x = tier4.error_correcting_code_raw(p, keys(8), 2, 64, CPU)
    assert set(torch.unique(x).tolist()) == {-1.0, 1.0}
    assert torch.equal(x[..., ::2, ::2], x[..., 1::2, 1::2])  # one value per 2 × 2 symbol
    clean, noisy, n = tier4.code_symbols(p, keys(8), 2, 64, CPU)
    assert (n == 32).all()
    assert (clean.sum(-1) % 2 == 0).all() and (clean.sum(-2) % 2 == 0).all()  # every row/column: even parity
    assert torch.equal(noisy, torch.where(x[..., ::2, ::2] < 0, True, False))
    rate = float((clean ^ noisy).double().mean())
    assert rate == pytest.approx(0.05, abs=0.006)

"""Features of bounded per-step scalar series (never fields): autocorrelation, periodogram, bursts.

A :class:`ScalarHistory` keeps ``[B, K, S, L]`` scalars (L <= features.history_length samples). At the
end each row's valid prefix (samples before divergence) is linearly detrended and analysed in float64,
vectorised over rows; samples after the prefix are zero in the detrended series, so a diverged
operator is described by its pre-divergence history. A series whose detrended variance is below 1e-12
of its raw variance (e.g. exact exponential growth of the energy) has no fluctuation to analyse: its
fluctuation features are NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from spinlock.features.fields import TINY

ACF_LAGS = (1, 2, 4, 8)
ASYM_LAGS = (1, 2, 4)


class ScalarHistory:
    """Scalars [B, K, S] recorded at the known steps ``steps`` into a NaN-initialised buffer."""

    def __init__(self, steps: Sequence[int], shape: Sequence[int], device: torch.device):
        self.index = {t: i for i, t in enumerate(steps)}
        self._buf = torch.full((len(steps), *shape), float("nan"), dtype=torch.float64, device=device)

    def record(self, t: int, values: torch.Tensor, alive: torch.Tensor) -> None:
        i = self.index.get(t)
        if i is not None:
            self._buf[i] = torch.where(alive.view(-1, *([1] * (values.dim() - 1))), values.double(), torch.nan)

    @property
    def buf(self) -> torch.Tensor:
        """The history as [*shape, L] (time last)."""
        return self._buf.movedim(0, -1)


def _valid_prefix(s: torch.Tensor) -> torch.Tensor:
    """[..., L] → bool mask of the leading run of finite samples."""
    return torch.cumprod(torch.isfinite(s).to(torch.int8), dim=-1).bool()


def detrend(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(residual with zeros outside the valid prefix, valid mask, valid count) for series [..., L]."""
    valid = _valid_prefix(s)
    w = valid.to(s.dtype)
    n = w.sum(-1, keepdim=True)
    t = torch.arange(s.shape[-1], dtype=s.dtype, device=s.device)
    y = torch.where(valid, s, 0.0)
    nn = n.clamp_min(1)
    tm = (w * t).sum(-1, keepdim=True) / nn
    ym = y.sum(-1, keepdim=True) / nn
    vt = (w * (t - tm) ** 2).sum(-1, keepdim=True)
    beta = torch.where(vt > 0, (w * (t - tm) * (y - ym)).sum(-1, keepdim=True) / vt.clamp_min(TINY), 0.0)
    r = torch.where(valid, y - ym - beta * (t - tm), 0.0)
    return r, valid, n.squeeze(-1)


def _moments_of_increments(y: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
    """Skewness, excess kurtosis, spike fraction of the increments within the valid prefix."""
    d = y[..., 1:] - y[..., :-1]
    ok = valid[..., 1:] & valid[..., :-1]
    w = ok.to(y.dtype)
    n = w.sum(-1)
    nn = n.clamp_min(1)
    dz = torch.where(ok, d, 0.0)
    mu = dz.sum(-1) / nn
    c = torch.where(ok, d - mu[..., None], 0.0)
    m2 = (c**2).sum(-1) / nn
    scale = (torch.where(ok, d.abs(), 0.0) ** 2).sum(-1) / nn
    has = (n > 2) & (m2 > 1e-12 * scale + TINY)
    nan = torch.full_like(mu, float("nan"))
    skew = torch.where(has, (c**3).sum(-1) / nn / m2.clamp_min(TINY) ** 1.5, nan)
    kurt = torch.where(has, (c**4).sum(-1) / nn / m2.clamp_min(TINY) ** 2 - 3.0, nan)
    dn = torch.where(ok, d, torch.full_like(d, float("nan")))
    med = torch.nanmedian(dn, dim=-1).values
    mad = torch.nanmedian((dn - med[..., None]).abs(), dim=-1).values
    far = ((dn - med[..., None]).abs() > 3.0 * mad[..., None] + 1e-12 * (med.abs()[..., None] + TINY)) & ok
    spike = torch.where(n > 2, far.to(y.dtype).sum(-1) / nn, nan)
    return {"skew": skew, "kurt": kurt, "spike": spike}


def series_features(s: torch.Tensor, stride: int, total_steps: int) -> dict[str, torch.Tensor]:
    """Features of series s [..., L] sampled every ``stride`` steps; keys as in names._SERIES_DOCS."""
    r, valid, n = detrend(s)
    L = s.shape[-1]
    y = torch.where(valid, s, 0.0)
    nn = n.clamp_min(1)
    raw_var = (torch.where(valid, y - y.sum(-1, keepdim=True) / nn[..., None], 0.0) ** 2).sum(-1)
    r2 = (r**2).sum(-1)
    fluct = (n > 2) & (r2 > 1e-12 * raw_var + TINY)
    nan = torch.full_like(r2, float("nan"))
    out: dict[str, torch.Tensor] = {}

    # autocorrelation of the zero-padded residual (biased estimator), all lags via FFT
    f = torch.fft.rfft(r, n=2 * L)
    acf = torch.fft.irfft(f.abs() ** 2, n=2 * L)[..., :L]
    acf = acf / acf[..., :1].clamp_min(TINY)
    for k in ACF_LAGS:
        out[f"acf{k}"] = torch.where(fluct & (n > k), acf[..., k] if k < L else nan, nan)
    lags = torch.arange(L, device=s.device)
    below = (acf < 1.0 / torch.e) & (lags >= 1) & (lags < n[..., None])
    first = torch.where(below, lags, torch.full_like(lags, L)).amin(-1).to(s.dtype)
    first = torch.minimum(first, (n - 1).clamp_min(1))
    out["decay"] = torch.where(fluct, first * stride / max(total_steps, 1), nan)

    # periodogram of the residual; bin j <-> j / (L * stride) cycles per step
    P = torch.fft.rfft(r, n=L).abs() ** 2
    P1 = P[..., 1:]
    if P1.shape[-1] == 0:
        out.update(dom_freq=nan, dom_power=nan, spec_entropy=nan)
    else:
        tot = P1.sum(-1)
        j = P1.argmax(-1, keepdim=True)
        nb = torch.cat([j - 1, j, j + 1], dim=-1)
        ok = (nb >= 0) & (nb < P1.shape[-1])
        pw = torch.where(ok, P1.gather(-1, nb.clamp(0, P1.shape[-1] - 1)), 0.0)
        freq = (nb + 1).to(s.dtype) / (L * stride)
        out["dom_freq"] = torch.where(fluct, (pw * freq).sum(-1) / pw.sum(-1).clamp_min(TINY), nan)
        out["dom_power"] = torch.where(fluct, pw.sum(-1) / tot.clamp_min(TINY), nan)
        p = P1 / tot.clamp_min(TINY)[..., None]
        ent = -(p * torch.log(p.clamp_min(TINY))).sum(-1) / math.log(max(P1.shape[-1], 2))
        out["spec_entropy"] = torch.where(fluct & (P1.shape[-1] > 1), ent, nan)

    inc = _moments_of_increments(s, valid)
    out["spike_frac"] = inc["spike"]
    out["incr_kurt"] = inc["kurt"]
    out["irreversibility"] = inc["skew"]

    # first half vs second half of the valid prefix
    idx = torch.arange(L, device=s.device)
    half = (n // 2)[..., None]
    first_h = valid & (idx < half)
    second_h = valid & (idx >= half)
    fa, sa = first_h.to(s.dtype), second_h.to(s.dtype)
    m1 = (fa * y).sum(-1) / fa.sum(-1).clamp_min(1)
    m2 = (sa * y).sum(-1) / sa.sum(-1).clamp_min(1)
    sd = (raw_var / nn).sqrt()
    level = (y.abs().sum(-1) / nn).clamp_min(TINY)
    out["stationarity"] = torch.where((n > 1) & (sd > 1e-9 * level), (m2 - m1) / sd.clamp_min(TINY), nan)
    v1 = (fa * r**2).sum(-1) / fa.sum(-1).clamp_min(1)
    v2 = (sa * r**2).sum(-1) / sa.sum(-1).clamp_min(1)
    ratio = torch.log10(v2.clamp_min(TINY) / v1.clamp_min(TINY))
    out["var_ratio"] = torch.where(fluct & (v1 > 0) & (v2 > 0), ratio, nan)
    return out


def window_slopes(y: torch.Tensor, steps: torch.Tensor, windows: list[tuple[float, float]]) -> torch.Tensor:
    """Least-squares slopes of y [..., L] against ``steps`` [L] within each inclusive step window,
    skipping NaN samples; → [..., len(windows)] (NaN with fewer than two samples)."""
    t = steps.to(y.dtype)
    out = []
    for lo, hi in windows:
        m = torch.isfinite(y) & (t >= lo) & (t <= hi)
        w = m.to(y.dtype)
        n = w.sum(-1)
        nn = n.clamp_min(1)
        yv = torch.where(m, y, 0.0)
        tm = (w * t).sum(-1) / nn
        ym = yv.sum(-1) / nn
        dt = torch.where(m, t - tm[..., None], 0.0)
        vt = (dt * dt).sum(-1)
        slope = (dt * (yv - ym[..., None])).sum(-1) / vt.clamp_min(TINY)
        out.append(torch.where((n > 1) & (vt > 0), slope, float("nan")))
    return torch.stack(out, -1)


def series_asymmetry(s: torch.Tensor) -> dict[int, torch.Tensor]:
    """Channel series s [..., C, L] → {lag: mean over a < b of |R_ab(lag) - R_ba(lag)|} (NaN for C = 1)."""
    C, L = s.shape[-2], s.shape[-1]
    r, valid, n = detrend(s)
    n = n.amin(-1)  # common valid prefix over channels (they diverge together)
    sd = (r**2).sum(-1, keepdim=True).div(n[..., None, None].clamp_min(1)).sqrt()
    z = r / (sd + TINY)
    out: dict[int, torch.Tensor] = {}
    nan = torch.full(s.shape[:-2], float("nan"), dtype=s.dtype, device=s.device)
    for k in ASYM_LAGS:
        if C < 2 or k >= L:
            out[k] = nan
            continue
        R = z[..., : L - k] @ z[..., k:].transpose(-1, -2) / (n[..., None, None] - k).clamp_min(1)
        iu = torch.triu_indices(C, C, offset=1, device=s.device)
        asym = (R - R.transpose(-1, -2))[..., iu[0], iu[1]].abs().mean(-1)
        out[k] = torch.where(n > k + 1, asym, nan)
    return out

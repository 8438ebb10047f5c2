"""Colour limits and colormaps shared by every renderer (rollouts, aggregate panels, IC gallery).

Fields are mapped to 8-bit RGB through a 256-entry lookup table, so a whole clip is coloured with one
vectorised gather. Limits are *robust* (percentiles over every finite value given) and are meant to be
computed once per clip, never per frame, so a colour means the same value in every frame.

Non-finite values (a diverged operator holds NaN from its divergence step on) get :data:`NAN_RGB`.
"""

from __future__ import annotations

from functools import lru_cache

import matplotlib
import numpy as np

from spinlock.errors import SpinlockError

NAN_RGB: tuple[int, int, int] = (128, 128, 128)
"""Colour of NaN/Inf pixels (mid grey), distinct from every colormap end used by default."""

LUT_SIZE = 256

FIELD_CMAP = "RdBu_r"
"""Default colormap for signed fields (diverging; limits are made symmetric around 0)."""

POSITIVE_CMAP = "magma"
"""Default colormap for non-negative quantities (variance, power)."""

Limits = tuple[float, float]


def robust_limits(x: np.ndarray, percentile: float = 1.0, symmetric: bool = False) -> Limits:
    """Colour limits ``(lo, hi)`` at the ``percentile`` and ``100 - percentile`` percentiles of ``x``.

    Non-finite values are ignored. ``symmetric`` gives ``(-a, a)`` with ``a`` the ``100 - percentile``
    percentile of ``|x|`` (for diverging colormaps centred on 0). A constant or empty input returns a
    unit-wide interval around its value so normalisation never divides by zero.
    """
    if not 0.0 <= percentile < 50.0:
        raise ValueError(f"percentile must be in [0, 50), got {percentile}")
    v = np.asarray(x, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (-0.5, 0.5) if symmetric else (0.0, 1.0)
    if symmetric:
        a = float(np.percentile(np.abs(v), 100.0 - percentile))
        return (-a, a) if a > 0 else (-0.5, 0.5)
    lo, hi = (float(q) for q in np.percentile(v, [percentile, 100.0 - percentile]))
    if hi <= lo:
        return (lo - 0.5, lo + 0.5)
    return (lo, hi)


def format_limits(limits: Limits) -> str:
    """Short label for limits: ``±a`` when symmetric around 0, else ``[lo, hi]`` (3 significant digits)."""
    lo, hi = limits
    if lo == -hi:
        return f"±{hi:.3g}"
    return f"[{lo:.3g}, {hi:.3g}]"


def variance_limits(var: np.ndarray, percentile: float) -> Limits:
    """``(0, hi)`` for a non-negative field: ``hi`` the robust upper limit, or 1 when ``var`` is all 0."""
    v = np.asarray(var, dtype=np.float64)
    v = v[np.isfinite(v)]
    hi = float(np.percentile(v, 100.0 - percentile)) if v.size else 0.0
    if hi <= 0.0:
        hi = float(v.max()) if v.size and v.max() > 0 else 1.0
    return (0.0, hi)


def normalize(x: np.ndarray, limits: Limits) -> np.ndarray:
    """``x`` mapped linearly so ``limits`` → [0, 1], clipped; NaN stays NaN (float32, same shape)."""
    lo, hi = limits
    if not hi > lo:
        raise ValueError(f"limits must satisfy lo < hi, got {limits}")
    y = (np.asarray(x, dtype=np.float32) - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    return np.clip(y, 0.0, 1.0)


def to_index(x: np.ndarray, limits: Limits) -> np.ndarray:
    """LUT indices (uint16, same shape): 0..255 for finite values, 256 for non-finite ones."""
    y = normalize(x, limits)
    finite = np.isfinite(y)
    idx = np.full(y.shape, LUT_SIZE, dtype=np.uint16)
    # round-to-nearest bin: 0 → 0, 1 → 255, so the two limits hit the two ends of the colormap
    idx[finite] = np.rint(y[finite] * (LUT_SIZE - 1)).astype(np.uint16)
    return idx


@lru_cache(maxsize=32)
def colormap_lut(name: str) -> np.ndarray:
    """uint8 [257, 3]: ``LUT_SIZE`` colours of the matplotlib colormap ``name`` plus :data:`NAN_RGB`."""
    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        raise SpinlockError(
            f"unknown colormap {name!r}; expected a matplotlib colormap name such as 'viridis',"
            f" 'magma', 'RdBu_r', 'twilight' (see matplotlib.colormaps)"
        ) from None
    rgba = cmap(np.linspace(0.0, 1.0, LUT_SIZE))
    lut = np.empty((LUT_SIZE + 1, 3), dtype=np.uint8)
    lut[:LUT_SIZE] = np.rint(rgba[:, :3] * 255.0).astype(np.uint8)
    lut[LUT_SIZE] = NAN_RGB
    lut.setflags(write=False)
    return lut


def apply_colormap(x: np.ndarray, cmap: str, limits: Limits) -> np.ndarray:
    """Colour a scalar field: ``x`` [..., H, W] → uint8 [..., H, W, 3] through ``cmap`` with ``limits``."""
    return colormap_lut(cmap)[to_index(x, limits)]


def channels_to_rgb(x: np.ndarray, limits: list[Limits] | tuple[Limits, ...]) -> np.ndarray:
    """Three channels as colour: ``x`` [..., 3, H, W] → uint8 [..., H, W, 3], channel ``i`` → R/G/B.

    Each channel is normalised with its own ``limits[i]``; a pixel with any non-finite channel is
    painted :data:`NAN_RGB`.
    """
    x = np.asarray(x)
    if x.ndim < 3 or x.shape[-3] != 3 or len(limits) != 3:
        raise ValueError(f"expected [..., 3, H, W] and 3 limits, got shape {x.shape}, {len(limits)} limits")
    y = np.stack([normalize(x[..., i, :, :], limits[i]) for i in range(3)], axis=-1)
    bad = ~np.isfinite(y).all(axis=-1)
    out = np.rint(np.nan_to_num(y) * 255.0).astype(np.uint8)
    out[bad] = NAN_RGB
    return out

"""Gallery of every registered IC type: a few samples each, channel 0 as a heatmap.

Samples use the type's default parameters and keys ``derive_key(seed, "ics-gallery/<name>", i)``, so
a gallery is reproducible and sample ``i`` of a type is the same whatever else is drawn.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from spinlock.ics.registry import TIER_NAMES, ICType, generate_ic, ic_types
from spinlock.rng import derive_key
from spinlock.viz.colors import FIELD_CMAP

TIER_COLORS = {0: "#444444", 1: "#1f5fa8", 2: "#2c8a3c", 3: "#b5651d", 4: "#8a2c8a"}
"""Title colour per tier, so tiers read at a glance."""


def gallery_samples(ic: ICType, samples: int, grid: int, seed: int, device: torch.device) -> np.ndarray:
    """Channel 0 of ``samples`` default-parameter fields of ``ic``: float32 [samples, H, W]."""
    keys = [derive_key(seed, f"ics-gallery/{ic.name}", i) for i in range(samples)]
    x = generate_ic(ic.name, {}, keys, channels=1, grid=grid, device=device)
    return x[:, 0].cpu().numpy()


def render_gallery(
    out: str | Path,
    samples: int = 3,
    grid: int = 128,
    seed: int = 0,
    columns: int = 4,
    device: torch.device | str = "cpu",
    names: list[str] | None = None,
) -> Path:
    """Write a PNG with ``samples`` tiles of every IC type (or of ``names``), ``columns`` types per row,
    ordered by tier.

    Each tile is channel 0 with the diverging :data:`~spinlock.viz.colors.FIELD_CMAP` and symmetric
    limits ``±max|x|`` of that tile; the first tile of each type is titled ``name (T<tier>)``.
    """
    if samples < 1 or columns < 1:
        raise ValueError(f"samples and columns must be >= 1, got {samples}, {columns}")
    registry = ic_types()
    chosen = [registry[n] for n in names] if names is not None else list(registry.values())
    types = sorted(chosen, key=lambda t: t.tier)  # stable: registration order within a tier
    if not types:
        raise ValueError("no IC types to render")
    columns = min(columns, len(types))
    rows = math.ceil(len(types) / columns)
    tile = 1.25
    fig = Figure(figsize=(columns * samples * tile + 0.2 * columns, rows * (tile + 0.3) + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(
        rows,
        columns * samples + columns - 1,
        wspace=0.05,
        hspace=0.35,
        left=0.01,
        right=0.99,
        bottom=0.01,
        top=1.0 - 0.6 / (rows * (tile + 0.3) + 0.6),
        width_ratios=([1.0] * samples + [0.12]) * (columns - 1) + [1.0] * samples,
    )
    dev = torch.device(device)
    for i, ic in enumerate(types):
        r, c = divmod(i, columns)
        fields = gallery_samples(ic, samples, grid, seed, dev)
        for s in range(samples):
            ax = fig.add_subplot(gs[r, c * (samples + 1) + s])
            lim = float(np.abs(fields[s]).max()) or 1.0
            ax.imshow(fields[s], cmap=FIELD_CMAP, vmin=-lim, vmax=lim, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if s == 0:
                ax.set_title(f"{ic.name} (T{ic.tier})", fontsize=8, loc="left", color=TIER_COLORS[ic.tier])
    legend = "   ".join(f"T{t}: {n}" for t, n in TIER_NAMES.items())
    fig.suptitle(
        f"Spinlock initial conditions — {len(types)} types, grid {grid}, seed {seed}    {legend}",
        fontsize=10,
        y=0.995,
    )
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path

"""Connected components of thresholded periodic fields (4-connectivity, wrap-around in both axes).

All R fields are labelled in one ``scipy.ndimage.label`` call on an [R, H, W] stack whose structure
element does not connect along R; components that touch across the periodic boundary are then merged
with a vectorised union-find over the labels that touch across the boundary. Labelling runs on the
CPU (fields on CUDA are copied, only at the field steps).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from spinlock.features.fields import Standardized

CHUNK_CELLS = 1 << 25
"""Fields are labelled in chunks of at most this many cells (128 MiB of int32 labels)."""
_STRUCTURE = np.zeros((3, 3, 3), dtype=bool)
_STRUCTURE[1] = ndimage.generate_binary_structure(2, 1)


def _union(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Root label of each of the n + 1 labels after merging the pairs (src, dst); roots are minima."""
    parent = np.arange(n + 1)
    while True:
        a, b = parent[src], parent[dst]
        if np.array_equal(a, b):
            return parent
        np.minimum.at(parent, np.maximum(a, b), np.minimum(a, b))  # hook the larger root under the smaller
        while True:  # pointer jumping until every label points at its root
            pp = parent[parent]
            if np.array_equal(pp, parent):
                break
            parent = pp


def periodic_components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a boolean [R, H, W] stack: (components, foreground cells, largest component cells), each [R]."""
    R = mask.shape[0]
    labels, n = ndimage.label(mask, structure=_STRUCTURE)
    flat = labels.reshape(R, -1)
    fg = mask.reshape(R, -1).sum(1).astype(np.float64)
    if n == 0:
        return np.zeros(R), fg, np.zeros(R)
    label_area = np.bincount(flat.ravel(), minlength=n + 1).astype(np.float64)
    # labels are assigned in raster order and never span two fields: field r holds (cummax[r-1], cummax[r]]
    row_of_label = np.searchsorted(np.maximum.accumulate(flat.max(1)), np.arange(n + 1), side="left")
    edges = [(labels[:, 0, :], labels[:, -1, :]), (labels[:, :, 0], labels[:, :, -1])]
    both = [(a > 0) & (b > 0) for a, b in edges]
    root = _union(n, np.concatenate([a[m] for (a, _), m in zip(edges, both, strict=True)]),
                  np.concatenate([b[m] for (_, b), m in zip(edges, both, strict=True)]))
    area = np.bincount(root, weights=label_area, minlength=n + 1)
    comps = np.flatnonzero(root == np.arange(n + 1))[1:]  # roots, background label 0 excluded
    rows, areas = row_of_label[comps], area[comps]
    count = np.bincount(rows, minlength=R).astype(np.float64)
    order = np.lexsort((areas, rows))
    rows, areas = rows[order], areas[order]
    last = np.r_[rows[1:] != rows[:-1], True]
    largest = np.zeros(R)
    largest[rows[last]] = areas[last]
    return count, fg, largest


def morphology_stats(s: Standardized, threshold: float) -> dict[str, torch.Tensor]:
    """Component counts/areas of {z > θ} and {z < -θ}; [..., C, H, W] → {name: [...]} (channel mean)."""
    z = s.z
    lead, (C, H, W) = z.shape[:-3], z.shape[-3:]
    pos = (z > threshold).reshape(-1, H, W).cpu().numpy()
    neg = (z < -threshold).reshape(-1, H, W).cpu().numpy()
    R = pos.shape[0]
    step = max(1, CHUNK_CELLS // (2 * H * W))  # bounds the int32 label image for large grids
    parts = [periodic_components(np.concatenate([pos[i : i + step], neg[i : i + step]])) for i in range(0, R, step)]
    pc = np.concatenate([c[: len(c) // 2] for c, _, _ in parts])
    nc = np.concatenate([c[len(c) // 2 :] for c, _, _ in parts])
    pfg = np.concatenate([f[: len(f) // 2] for _, f, _ in parts])
    nfg = np.concatenate([f[len(f) // 2 :] for _, f, _ in parts])
    plg = np.concatenate([g[: len(g) // 2] for _, _, g in parts])
    cells = float(H * W)
    area = np.where(pc > 0, pfg / np.maximum(pc, 1) / cells, 0.0)
    largest = np.where(pfg > 0, plg / np.maximum(pfg, 1), 0.0)
    out = {
        "morphology.pos_count": pc,
        "morphology.neg_count": nc,
        "morphology.pos_area": area,
        "morphology.largest": largest,
        "morphology.coverage": (pfg + nfg) / cells,
    }
    return {
        k: torch.from_numpy(v).to(device=z.device, dtype=z.dtype).reshape(*lead, C).mean(-1)
        for k, v in out.items()
    }

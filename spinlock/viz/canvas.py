"""Lay panels out on one frame: a title bar with a step counter, a grid of labelled, upscaled panels.

Text is rasterised with matplotlib (Agg) once per clip — the static background (title, labels) in one
figure and every distinct step label in a second — so composing a frame is only array copies. Frame
sizes are padded to a multiple of :data:`BLOCK` so H.264 encoders (yuv420p, 16-pixel macroblocks) take
them unchanged and every output format has the same frame size.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox, IdentityTransform

from spinlock.viz.frames import Panel

BLOCK = 16
MARGIN = 6
TITLE_PT = 10.0
LABEL_PT = 7.0
_DPI = 100.0


def _px(points: float) -> int:
    """Line height in pixels for a font size in points (1.45 em leaves room for descenders)."""
    return int(math.ceil(points * _DPI / 72.0 * 1.45))


Text = tuple[int, int, int, str, float, str]
"""``(x, y_top, max_width, text, points, weight)`` in pixels from the top-left; text is clipped at
``max_width`` so a long label never runs into its neighbour."""


def _rasterize(width: int, height: int, texts: Sequence[Text]) -> np.ndarray:
    """White uint8 [height, width, 3] image with ``texts`` drawn."""
    fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI, facecolor="white")
    canvas = FigureCanvasAgg(fig)
    for x, y_top, max_w, s, pt, weight in texts:
        artist = fig.text(
            x,
            height - y_top,
            s,
            fontsize=pt,
            fontweight=weight,
            va="top",
            ha="left",
            transform=IdentityTransform(),
            family="DejaVu Sans",
        )
        artist.set_clip_box(Bbox([[x, height - y_top - 2 * _px(pt)], [x + max_w, height - y_top + 1]]))
        artist.set_clip_on(True)
    canvas.draw()
    img = np.asarray(canvas.buffer_rgba())[..., :3]
    if img.shape[:2] != (height, width):  # Agg rounds figure sizes; crop or pad to the exact size
        out = np.full((height, width, 3), 255, np.uint8)
        h, w = min(height, img.shape[0]), min(width, img.shape[1])
        out[:h, :w] = img[:h, :w]
        return out
    return img.copy()


def default_ncols(n_panels: int, per_operator: int) -> int:
    """Columns so that each operator's panels stay on one row and the grid is roughly square."""
    per = max(1, per_operator)
    n_ops = max(1, math.ceil(n_panels / per))
    return per * max(1, min(n_ops, math.ceil(math.sqrt(n_ops / per))))


class ClipCanvas:
    """Frames of a grid of panels: ``frame(t)`` → uint8 [H, W, 3] for ``t`` in ``range(len(self))``.

    ``panels`` must share T and pixel size; ``steps`` [T] are the simulation steps shown in the counter.
    """

    def __init__(
        self,
        panels: Sequence[Panel],
        steps: Sequence[int],
        title: str = "",
        ncols: int | None = None,
        scale: int = 1,
    ):
        if not panels:
            raise ValueError("no panels to lay out")
        shapes = {p.pixels.shape for p in panels}
        if len(shapes) != 1:
            raise ValueError(f"panels must share [T, h, w, 3], got {sorted(shapes)}")
        t, h, w, _ = panels[0].pixels.shape
        if len(steps) != t:
            raise ValueError(f"{len(steps)} step labels for {t} frames")
        if scale < 1:
            raise ValueError(f"scale must be >= 1, got {scale}")
        self.panels = list(panels)
        self.steps = [int(s) for s in steps]
        self.scale = scale
        self.ncols = max(1, min(ncols or default_ncols(len(panels), 1), len(panels)))
        self.nrows = math.ceil(len(panels) / self.ncols)
        self.ph, self.pw = h * scale, w * scale
        self.label_h = _px(LABEL_PT)
        self.title_h = _px(TITLE_PT) + MARGIN
        cell_h = self.label_h + self.ph + MARGIN
        cell_w = self.pw + MARGIN
        width = MARGIN + self.ncols * cell_w
        height = self.title_h + self.nrows * cell_h + MARGIN
        self.width = -(-width // BLOCK) * BLOCK
        self.height = -(-height // BLOCK) * BLOCK
        self.origins = [
            (self.title_h + (i // self.ncols) * cell_h + self.label_h, MARGIN + (i % self.ncols) * cell_w)
            for i in range(len(panels))
        ]
        self._counter = self._render_counter()
        title_w = self.width - 3 * MARGIN - self._counter.shape[2]
        texts: list[Text] = [(MARGIN, MARGIN // 2, title_w, title, TITLE_PT, "bold")]
        texts += [
            (x, y - self.label_h, self.pw, p.label, LABEL_PT, "normal")
            for p, (y, x) in zip(panels, self.origins, strict=True)
        ]
        self.background = _rasterize(self.width, self.height, texts)

    def _render_counter(self) -> np.ndarray:
        """uint8 [T, h, w, 3]: the text "t = <step>" for every frame, right-aligned in the title bar."""
        labels = [f"t = {s}" for s in self.steps]
        row = _px(TITLE_PT)
        width = max(8, int(math.ceil(max(len(s) for s in labels) * TITLE_PT * _DPI / 72.0 * 0.65)))
        width = min(width, self.width - 2 * MARGIN)
        texts: list[Text] = [(0, i * row, width, s, TITLE_PT, "normal") for i, s in enumerate(labels)]
        strip = _rasterize(width, row * len(labels), texts)
        return strip.reshape(len(labels), row, width, 3)

    def __len__(self) -> int:
        return len(self.steps)

    def frame(self, t: int) -> np.ndarray:
        """Compose frame ``t``: background, step counter, each panel upscaled by ``scale`` (nearest)."""
        img = self.background.copy()
        _, ch, cw, _ = self._counter.shape
        x0 = self.width - MARGIN - cw
        img[MARGIN // 2 : MARGIN // 2 + ch, x0 : x0 + cw] = self._counter[t]
        s = self.scale
        for p, (y, x) in zip(self.panels, self.origins, strict=True):
            px = p.pixels[t]
            if s > 1:
                px = np.repeat(np.repeat(px, s, axis=0), s, axis=1)
            img[y : y + self.ph, x : x + self.pw] = px
        return img

    def __getitem__(self, t: int) -> np.ndarray:
        if not -len(self) <= t < len(self):
            raise IndexError(f"frame {t} out of range for {len(self)} frames")
        return self.frame(t % len(self))

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.frame(t) for t in range(len(self)))

    def panel_box(self, i: int) -> tuple[int, int, int, int]:
        """Pixel box ``(y0, x0, y1, x1)`` of panel ``i`` in every frame (for tests and overlays)."""
        y, x = self.origins[i]
        return (y, x, y + self.ph, x + self.pw)

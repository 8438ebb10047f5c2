"""Rendering, video and dashboards (headless: matplotlib figures on the Agg canvas, no pyplot).

Array level (no dataset needed):

* :mod:`~spinlock.viz.colors` — robust colour limits and colormap LUTs (also used by the IC gallery)
* :mod:`~spinlock.viz.frames` — rollout ``[M, T, C, H, W]`` → coloured panels: heatmap / rgb / pca
* :mod:`~spinlock.viz.canvas` — panels laid out on frames with labels and a step counter
* :mod:`~spinlock.viz.video` — GIF / MP4 / PNG frames / PNG grid writers
* :mod:`~spinlock.viz.aggregate` — realization mean, variance, radially averaged power spectra

Run level (``OUT/`` of ``spinlock run``): :mod:`~spinlock.viz.rundata` (read-only view),
:mod:`~spinlock.viz.select` (which operators), :mod:`~spinlock.viz.render` (clips of a selection),
:mod:`~spinlock.viz.feature_plots`, :mod:`~spinlock.viz.tokenizer_plots` and
:func:`spinlock.viz.report.write_report` (``OUT/report/``). Submodules are imported on use so that
``import spinlock`` stays light.
"""

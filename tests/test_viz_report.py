"""The run report and `spinlock visualize`: files exist, decode, are not blank, every plot is linked."""

from __future__ import annotations

import base64
import io
import sys
import types
from html.parser import HTMLParser
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from synthetic_run import make_run

from spinlock.cli.main import main
from spinlock.errors import SpinlockError
from spinlock.viz.report import write_report


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.srcs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"])
        if tag == "img" and a.get("src"):
            self.srcs.append(a["src"])


def _parse(index: Path) -> _Links:
    p = _Links()
    p.feed(index.read_text())
    return p


def _images(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.suffix in (".png", ".gif")}


def _not_blank(path: Path) -> None:
    img = iio.imread(path, index=0) if path.suffix == ".gif" else iio.imread(path)
    assert img[..., :3].astype(float).var() > 0, f"{path} is blank"


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("full"), n=10, m=2, steps=6)


def test_report_links_every_plot(full_run):
    report = write_report(full_run.out)
    assert report == full_run.out / "report"
    links = _parse(report / "index.html")
    images = _images(report)
    expected = {
        "dataset-ic-types.png",
        "features-initial.png",
        "features-architecture.png",
        "features-summary.png",
        "features-correlation.png",
        "features-temporal.png",
        "tokenizer-training.png",
        "tokenizer-codebook-training.png",
        "tokenizer-category-sizes.png",
        "tokenizer-code-usage.png",
        "tokenizer-embedding.png",
        "tokenizer-same-token.png",
    }
    assert expected <= images
    assert any(i.startswith("rollouts/") and i.endswith(".gif") for i in images)
    assert images <= set(links.hrefs)  # every plot linked
    assert all((report / h).is_file() for h in links.hrefs if not h.startswith("#"))
    for name in images:
        _not_blank(report / name)
    # images are inlined (self-contained page): each src decodes to the linked file's bytes
    inlined = [s for s in links.srcs if s.startswith("data:image/")]
    assert len(inlined) == len(images)
    pngs = {base64.b64decode(s.split(",", 1)[1]) for s in inlined}
    assert (report / "features-temporal.png").read_bytes() in pngs
    png = next(s for s in inlined if s.startswith("data:image/png"))
    img = iio.imread(io.BytesIO(base64.b64decode(png.split(",", 1)[1])), extension=".png")
    assert img.ndim == 3 and img.shape[0] > 50
    md = (report / "summary.md").read_text()
    assert "| operators N | 10 |" in md and "diverged: 1, ok: 9" in md and "(features-correlation.png)" in md
    gif = iio.imread(next(report.glob("rollouts/*.gif")), index=None)
    assert gif.shape[0] == 7  # steps 0..6


def test_report_degrades_without_tokens_and_trajectories(tmp_path, monkeypatch):
    syn = make_run(tmp_path / "bare", n=6, tokens=False, tokenizer_dir=False, temporal=False, store_trajectories=False)
    fake = types.ModuleType("spinlock.replay")

    def unavailable(out_dir, index):
        raise SpinlockError("replay is unavailable for this synthetic run")
    fake.replay_operator = unavailable
    monkeypatch.setitem(sys.modules, "spinlock.replay", fake)
    report = write_report(syn.out)
    md = (report / "summary.md").read_text()
    assert "the tokenizer has not run; section omitted" in md
    assert "temporal plot omitted" in md
    assert "Rollout renderings omitted" in md and "replay is unavailable" in md
    images = _images(report)
    assert not any(i.startswith("tokenizer") or i.startswith("rollouts") for i in images)
    assert "features-correlation.png" in images
    assert images <= set(_parse(report / "index.html").hrefs)


def test_visualize_cli_renders_and_decodes(full_run, tmp_path, capsys):
    out = tmp_path / "viz"
    rc = main(
        [
            "visualize",
            str(full_run.out),
            "--out",
            str(out),
            "--operators",
            "1,3",
            "--mode",
            "pca",
            "--realizations",
            "2",
            "--stride",
            "2",
            "--format",
            "gif,mp4,png,grid",
            "--plots",
            "rollouts",
            "--scale",
            "4",
        ]
    )
    assert rc == 0
    d = out / "rollouts"
    gif = iio.imread(d / "operators.gif", index=None)
    mp4 = np.stack(list(iio.imiter(d / "operators.mp4", plugin="FFMPEG")))
    frames = sorted((d / "operators-frames").glob("*.png"))
    assert gif.shape[0] == mp4.shape[0] == len(frames) == 4  # steps 0, 2, 4, 6
    first = iio.imread(frames[0])
    assert mp4.shape[1:3] == first.shape[:2] == gif.shape[1:3]
    assert first.shape[0] % 16 == 0 and first.shape[1] % 16 == 0
    # one row per operator, one column per realization: 16 px panels at scale 4
    assert first.shape[1] >= 2 * 16 * 4 and first.shape[0] >= 2 * 16 * 4
    for p in [d / "operators-grid.png", d / "operators-op1-aggregate.png", d / "operators-aggregate.gif"]:
        _not_blank(p)
    printed = capsys.readouterr().out
    assert "operators.mp4" in printed and "+ 8 PNG frames" in printed


def test_visualize_cli_is_deterministic(full_run, tmp_path):
    args = ["--random", "3", "--seed", "5", "--format", "grid", "--plots", "rollouts", "--no-aggregate"]
    for name in ("a", "b"):
        assert main(["visualize", str(full_run.out), "--out", str(tmp_path / name), *args]) == 0
    a = (tmp_path / "a/rollouts/random3-seed5-grid.png").read_bytes()
    assert a == (tmp_path / "b/rollouts/random3-seed5-grid.png").read_bytes()
    assert not (tmp_path / "a/rollouts/random3-seed5-aggregate-grid.png").exists()


def test_visualize_cli_per_token_and_plots(full_run, tmp_path):
    out = tmp_path / "tok"
    rc = main(
        [
            "visualize",
            str(full_run.out),
            "--out",
            str(out),
            "--per-token",
            "--category",
            "structure",
            "--format",
            "gif",
            "--no-aggregate",
            "--mode",
            "heatmap",
            "--channels",
            "0",
        ]
    )
    assert rc == 0
    gif = iio.imread(out / "rollouts/per-token-structure.gif", index=None)
    assert gif.shape[0] == 7
    assert (out / "features/features-correlation.png").is_file()
    assert (out / "tokenizer/tokenizer-same-token.png").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--category", "amplitude"], "--category only applies to --per-token"),
        (["--operators", "0,99"], "operator(s) [99]"),
        (["--mode", "rgb", "--channels", "0,1"], "rgb mode needs exactly 3 channels"),
        (["--cmap", "nope"], "unknown colormap 'nope'"),
        (["--percentile", "60"], "--percentile"),
        (["--stride", "0"], "--stride"),
        (["--plots", "rollouts,movies"], "--plots"),
        (["--diversity", "realizations"], "--diversity only applies"),
    ],
)
def test_visualize_cli_user_errors(full_run, tmp_path, capsys, extra, message):
    rc = main(["visualize", str(full_run.out), "--out", str(tmp_path / "e"), "--format", "grid", *extra])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_visualize_cli_per_token_needs_tokens(tmp_path, capsys):
    syn = make_run(tmp_path / "nt", n=4, tokens=False, tokenizer_dir=False)
    assert main(["visualize", str(syn.out), "--out", str(tmp_path / "o"), "--per-token"]) == 2
    assert "no /tokens yet" in capsys.readouterr().err


def test_embedding_panels_show_each_category_before_extra_streams():
    from spinlock.viz.tokenizer_plots import panel_order

    names = ["c00_summary.0", "c00_summary.1", "c01_arch", "c02_summary.0", "c02_summary.1", "c02_summary.2",
             "temporal", "ic"]
    assert panel_order(names) == [0, 2, 3, 6, 7, 1, 4, 5]
    assert panel_order(["a", "b"]) == [0, 1]


def test_codebook_training_plot_draws_what_training_reports():
    """The per-epoch metrics Ray Train reports are the keys the codebook plot draws (usage and perplexity)."""
    from spinlock.encoding.training import flat_metrics
    from spinlock.viz.tokenizer_plots import plot_codebook_training

    records = [flat_metrics({"epoch": e, "loss": 1.0 / (e + 1), "validation": {
        "r2": {"all": [0.5, 0.6, 0.7]}, "codebook_usage": [0.9, 0.8, 0.7], "perplexity": [5.0, 6.0, 7.0]}})
        for e in range(3)]
    fig = plot_codebook_training(records)
    assert fig is not None
    assert sorted(ax.get_title() for ax in fig.axes) == [
        "codebook perplexity per level (training)", "codebook usage per level (training)"]
    assert all(len(ax.get_lines()) == 3 for ax in fig.axes)

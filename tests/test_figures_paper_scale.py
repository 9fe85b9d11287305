"""Every scale-dependent figure drawn at the paper config's size: its sizes, seeds, step counts,
measurement windows and evaluations (config/paper.yaml), on synthetic values with the paper's
trends. Each axis of each drawn figure must show its tick labels without overlap."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml

from spectral_reach.analysis import lm
from spectral_reach.figures import (
    fig01_scaling,
    fig04_probe_ratio,
    fig05_chi_net,
    fig07_test_loss,
    fig08_isocompute,
    fig09_vit,
    fig10_components,
    fig12_entk,
    style,
)
from spectral_reach.train.schedule import eval_steps, lnp_steps

PAPER = yaml.safe_load((Path(__file__).resolve().parents[1] / "config/paper.yaml").read_text())


def overlapping_tick_labels(fig: plt.Figure) -> list[str]:
    """``"<axes title> <x|y>: 'a' / 'b'"`` for every pair of visible tick labels that overlap."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    found = []
    for ax in fig.axes:
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            lo, hi = sorted(axis.get_view_interval())
            ticks = [
                (t.label1.get_window_extent(renderer), t.label1.get_text())
                for t in axis.get_major_ticks() + axis.get_minor_ticks()
                if t.label1.get_visible() and t.label1.get_text() and lo <= t.get_loc() <= hi
            ]
            ticks.sort(key=lambda b: b[0].x0 if name == "x" else b[0].y0)
            for (a, ta), (b, tb) in zip(ticks, ticks[1:]):
                if a.overlaps(b):
                    found.append(f"{ax.get_title()} {name}: {ta!r} / {tb!r}")
    return found


def data_in_display(ax: plt.Axes) -> np.ndarray:
    """Points on everything ``ax`` draws from data, in display coordinates: line vertices and 20 points
    along each segment, scatter points, and the outlines of polygons (bands, histograms)."""
    from matplotlib.collections import PathCollection, PolyCollection

    def along(xy: np.ndarray) -> np.ndarray:
        xy = xy[np.isfinite(xy).all(axis=1)]
        if len(xy) < 2:
            return xy
        t = np.linspace(0, 1, 20)[:, None, None]
        return (xy[:-1] + t * (xy[1:] - xy[:-1])).reshape(-1, 2)

    out = [np.empty((0, 2))]
    for line in ax.get_lines():
        if line.get_transform() == ax.transData and line.get_visible():
            out.append(along(ax.transData.transform(np.asarray(line.get_xydata(), float))))
    for c in ax.collections:
        if isinstance(c, PathCollection):
            out.append(c.get_offset_transform().transform(np.asarray(c.get_offsets(), float)))
        elif isinstance(c, PolyCollection):
            out += [along(c.get_transform().transform(path.vertices)) for path in c.get_paths()]
    return np.concatenate(out)


def legends_over_data(fig: plt.Figure) -> list[str]:
    """``"<axes title>: legend covers N points"`` for every legend inside an axes that covers its data."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    found = []
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None or not legend.get_visible():
            continue
        box = legend.get_window_extent(renderer)
        xy = data_in_display(ax)
        inside = (xy[:, 0] > box.x0) & (xy[:, 0] < box.x1) & (xy[:, 1] > box.y0) & (xy[:, 1] < box.y1)
        if inside.any():
            found.append(f"{ax.get_title()}: legend covers {int(inside.sum())} points")
    return found


def scarce_log_labels(fig: plt.Figure) -> list[str]:
    """``"<axes title> y: labels"`` for a log y axis spanning less than two decades with fewer than three
    labelled ticks in view: too few to read a value off."""
    fig.canvas.draw()
    found = []
    for ax in fig.axes:
        lo, hi = sorted(ax.get_ylim())
        if ax.get_yscale() != "log" or lo <= 0 or np.log10(hi / lo) >= 2:
            continue
        ticks = ax.yaxis.get_major_ticks() + ax.yaxis.get_minor_ticks()
        labels = [t.label1.get_text() for t in ticks if t.label1.get_text() and lo <= t.get_loc() <= hi]
        if len(labels) < 3:
            found.append(f"{ax.get_title()} y: {labels}")
    return found


def legends_over_ticks(fig: plt.Figure) -> list[str]:
    """``"<axes title>: legend covers tick label 'a'"`` for every legend that covers a visible tick
    label of any axes of the figure (a legend beside its panel can run into the next one)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [(ax, ax.get_legend()) for ax in fig.axes if ax.get_legend() and ax.get_legend().get_visible()]
    found = []
    for ax, legend in legends:
        box = legend.get_window_extent(renderer)
        for other in fig.axes:
            for axis in (other.xaxis, other.yaxis):
                lo, hi = sorted(axis.get_view_interval())
                for t in axis.get_major_ticks() + axis.get_minor_ticks():
                    label = t.label1
                    if label.get_visible() and label.get_text() and lo <= t.get_loc() <= hi:
                        if box.overlaps(label.get_window_extent(renderer)):
                            found.append(f"{ax.get_title()}: legend covers tick label {label.get_text()!r}")
    return found


def defects(fig: plt.Figure) -> list[str]:
    return overlapping_tick_labels(fig) + legends_over_data(fig) + legends_over_ticks(fig) + scarce_log_labels(fig)


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plotting functions save, kept open for inspection."""
    figures = []
    monkeypatch.setattr(style, "save", lambda fig, pdf, png, dpi: figures.append(fig))
    yield figures
    for fig in figures:
        plt.close(fig)


def _lm_tables(dataset: str, seed_rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Runs, LNP windows (as lm_summary writes them) and test-loss curves of one data set."""
    c = PAPER["lm"][dataset]
    per_step = c["batch_size"] * c["context_length"]
    windows = lnp_steps(c["steps"], c["lnp"]["per_decade"], c["lnp"]["width"])
    evals = np.array(eval_steps(c["steps"], c["eval"]["per_decade"]))
    runs, lnp, curves = [], [], []
    for size in c["sizes"]:
        n = lm.label_params(size)
        for seed in c["seeds"]:
            final = 1.5 + 40 * n**-0.3 + seed_rng.normal(0, 0.005)
            steps = np.array(sorted(windows))
            raw = pd.DataFrame(
                {
                    "step": steps,
                    "window": [windows[s] for s in steps],
                    "tokens": (steps + 1) * per_step,
                    "delta": 1e-3 / (1 + steps),
                    "chi_loss": 1 / (1 + steps / 1e3),
                    "chi_net": 1e2 * n**0.5 * (1 + steps / 1e4),
                    "chi_pos": 1e-4 * (1 + steps) ** -0.7 * n**-0.2 * np.exp(seed_rng.normal(0, 0.1, len(steps))),
                    "loss": final + 5 / (1 + steps / 100),
                }
            )
            lnp.append(lm.lnp_windows(raw, 40).assign(size=size, seed=seed))
            curves.append(
                pd.DataFrame(
                    {
                        "size": size,
                        "seed": seed,
                        "tokens": (evals + 1) * per_step,
                        "test_loss": final + 5 / (1 + evals / 100),
                    }
                )
            )
            runs.append(
                {
                    "size": size,
                    "seed": seed,
                    "params": n,
                    "tokens": c["steps"] * per_step,
                    "first_tokens": per_step,
                    "final_train_loss": final,
                    "final_test_loss": final + 0.05,
                }
            )
    return pd.DataFrame(runs), pd.concat(lnp, ignore_index=True), pd.concat(curves, ignore_index=True)


@pytest.fixture(scope="module")
def paper_tables():
    rng = np.random.default_rng(0)
    return {d: _lm_tables(d, rng) for d in PAPER["datasets"]}


def _fits(tables, loss: str) -> pd.DataFrame:
    rows = [lm.loss_fits(runs, 1.0).query(f"loss == '{loss}'").assign(dataset=d) for d, (runs, _, _) in tables.items()]
    return pd.concat(rows, ignore_index=True)


def _style(name: str) -> dict:
    return {k: PAPER["figures"][name][k] for k in ("width", "height", "dpi")}


def _draw_language_model_figures(tables) -> None:
    """Figs. 1, 7, 8 and 10-11 of ``{data set: (runs, lnp windows, test-loss curves)}``."""
    data = {d: (runs, lnp) for d, (runs, lnp, _) in tables.items()}
    fig01_scaling.plot(data, _fits(tables, "train"), "f.pdf", "f.png", **_style("fig01"))
    fig07_test_loss.plot({d: r for d, (r, _) in data.items()}, _fits(tables, "test"), "f", "f", **_style("fig07"))
    iso = {}
    for d, (runs, lnp, curves) in tables.items():
        budgets = lm.budgets(runs, PAPER["analysis"]["isocompute_budgets"])
        iso[d] = (lm.isocompute(curves, runs, budgets, "test_loss"), lm.isocompute(lnp, runs, budgets, "chi_pos"))
    fig08_isocompute.plot(iso, "f", "f", **_style("fig08"))
    fig10_components.plot({d: (lnp, runs) for d, (runs, lnp) in data.items()}, "f", "f", **_style("fig10"))


def test_language_model_figures(paper_tables, drawn):
    _draw_language_model_figures(paper_tables)
    assert len(drawn) == 4
    assert [defects(fig) for fig in drawn] == [[]] * 4


@pytest.mark.parametrize("n", [1, 3, 5])
def test_figures_of_every_data_set_scale_with_their_number(paper_tables, drawn, n):
    """Issue 40: a study of 1, 3 or 5 data sets (the paper's tables under new names, alternating
    text and images) draws the figures with a panel or row per data set without a legend over data
    or ticks and without overlapping tick labels."""
    sources = list(paper_tables.values())
    tables = {f"set{i}": sources[i % len(sources)] for i in range(n)}
    _draw_language_model_figures(tables)
    ratios, fig05_data = _probe_data(tables)
    fig04_probe_ratio.plot(ratios, "f", "f", **_style("fig04"))
    fig05_chi_net.plot(fig05_data, "f", "f", **_style("fig05"))
    assert len(drawn) == 6
    assert {fig.number: defects(fig) for fig in drawn} == {fig.number: [] for fig in drawn}


def _probe_data(tables) -> tuple[dict, dict]:
    """Fig. 4's probe ratios and Fig. 5's (trained LNP, probe LNP, runs) per data set."""
    ratios, fig05_data = {}, {}
    for d, (runs, lnp, _) in tables.items():
        rows = []
        for size, n in runs.groupby("size")["params"].first().items():
            for seed in PAPER["probe"]["seeds"]:
                for t0, t1 in PAPER["probe"]["time_windows"]:
                    rows.append(
                        {
                            "t0": t0,
                            "t1": t1,
                            "ratio": 0.3 * (1 + t0) * (n / 1e6) ** -0.1,
                            "size": size,
                            "seed": seed,
                            "params": n,
                        }
                    )
        ratios[d] = pd.DataFrame(rows)
        probe = lnp.assign(backbone="random", chi_net=lnp.groupby("size")["chi_net"].transform("first"))
        fig05_data[d] = (lnp, probe, runs)
    return ratios, fig05_data


def test_probe_figures(paper_tables, drawn):
    ratios, fig05_data = _probe_data(paper_tables)
    fig04_probe_ratio.plot(ratios, "f", "f", **_style("fig04"))
    fig05_chi_net.plot(fig05_data, "f", "f", **_style("fig05"))
    assert [defects(fig) for fig in drawn] == [[]] * 2


def test_vit_figure(drawn):
    v = PAPER["vit"]
    windows = lnp_steps(v["steps"], v["lnp"]["per_decade"], v["lnp"]["width"])
    steps = np.array(sorted(windows))
    runs, lnp, curves = [], [], []
    for par in ("standard", "mup"):
        for size in v[par]["sizes"]:
            n = lm.label_params(size)
            for seed in v["seeds"]:
                final = 0.5 + 20 * n**-0.3
                runs.append(
                    {
                        "parametrization": par,
                        "size": size,
                        "seed": seed,
                        "params": n,
                        "images": v["steps"] * v["batch_size"],
                        "final_train_loss": final,
                        "final_test_loss": final,
                    }
                )
                raw = pd.DataFrame(
                    {
                        "step": steps,
                        "window": [windows[s] for s in steps],
                        "images": (steps + 1) * v["batch_size"],
                        "delta": 1e-3,
                        "chi_loss": 1.0,
                        "chi_net": 1e3,
                        "chi_pos": 1e-3 * (1 + steps) ** -0.5 * n**-0.1,
                        "loss": final,
                    }
                )
                lnp.append(lm.lnp_windows(raw, 40, "images").assign(parametrization=par, size=size, seed=seed))
                every = np.arange(0, v["steps"], 50)
                curves.append(
                    pd.DataFrame(
                        {
                            "parametrization": par,
                            "size": size,
                            "seed": seed,
                            "step": every,
                            "images": (every + 1) * v["batch_size"],
                            "loss": final + 2 / (1 + every / 500),
                        }
                    )
                )
    fig09_vit.plot(pd.DataFrame(runs), pd.concat(lnp), pd.concat(curves), "f", "f", **_style("fig09"))
    assert [defects(fig) for fig in drawn] == [[]]
    assert all(ax.get_xlim()[0] <= 0 for ax in drawn[0].axes)  # step 0, which the caption quotes, is drawn


def test_entk_figure(drawn):
    """Fig. 12 at the paper's output count: two stages' spectra whose histograms peak where a legend
    inside the panel would sit."""
    rng = np.random.default_rng(0)
    n = PAPER["checks"]["entk"]["vocab_count"] * len(PAPER["checks"]["entk"]["positions"])
    spectrum = pd.concat(
        pd.DataFrame({"stage": stage, "lhat": 10 ** rng.normal(mu, 0.4, n), "chat_sq": rng.dirichlet(np.ones(n))})
        for stage, mu in (("init", -1.5), ("trained", -1.2))
    )
    shift = pd.DataFrame({"stage": ["init", "trained"], "shift": [0.1, -0.4], "chi_pos": [0.03, 0.01]})
    fig12_entk.plot(spectrum, shift, "f", "f", **_style("fig12"))
    assert [defects(fig) for fig in drawn] == [[]]
    colors = [line.get_color() for line in drawn[0].axes[2].get_lines()]
    assert np.abs(np.subtract(*[matplotlib.colors.to_rgb(c) for c in colors])).max() > 0.3  # two distinct colours


def test_the_legend_check_finds_a_legend_over_data():
    style.setup()
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [0, 1], label="a line under its legend")
    ax.legend(loc="center")
    assert legends_over_data(fig)
    ax.legend(loc="upper left")
    assert legends_over_data(fig) == []
    plt.close(fig)


def test_the_overlap_check_finds_overlapping_labels():
    from matplotlib import ticker

    style.setup()  # the figures' own (small) fonts
    fig, ax = plt.subplots(figsize=(2.5, 1.5))
    ax.set_xscale("log")
    ax.set_xlim(1.5e4, 9e4)  # labelling every minor tick, as matplotlib does on short log ranges
    ax.xaxis.set_minor_formatter(ticker.LogFormatterSciNotation(labelOnlyBase=False))
    assert any(" x: " in found for found in overlapping_tick_labels(fig))
    style.readable_log_ticks(ax.xaxis, 1.5e4, 9e4)  # what every figure applies to such axes
    assert overlapping_tick_labels(fig) == []
    plt.close(fig)

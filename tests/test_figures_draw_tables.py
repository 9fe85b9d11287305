"""Every figure draws exactly the numbers of its tables and its caption, on a CI-scale tree.

Each figure's command is taken from Snakemake's own dry run (``-p``) and run in-process with
``style.save`` replaced, so the test holds the very Matplotlib figure the rule draws. The
points of its lines and scatters (what is on the page, read from the artists) are compared,
as multisets, with the same numbers computed independently from the summary tables: means
over seeds, left out exactly where the figure says it leaves points out. The caption's numbers
(its ``caption_values``, which the rendered caption prints) must be among the drawn ones, and
the caption rendered here must equal the one the workflow wrote.

The tree is the CI-scale run, or the finished run of the config that ``SPECTRAL_REACH_FIGURES_CONFIG``
names (``make rehearsal`` checks runs/rehearsal so).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from workflow_run import CI_CONFIG_PATH, ROOT, snakemake

from spectral_reach.cli import main
from spectral_reach.figures import style
from spectral_reach.rfm import data_spectrum

pytestmark = pytest.mark.slow

RULES = ["fig01", "fig03", "fig04", "fig05", "fig06", "fig07", "fig08", "fig09", "fig10", "fig12"]
RTOL = 1e-9
CONFIG_PATH = ROOT / os.environ.get("SPECTRAL_REACH_FIGURES_CONFIG", CI_CONFIG_PATH)
CONFIG = yaml.safe_load(CONFIG_PATH.read_text())


@pytest.fixture(scope="module")
def launch(request) -> Path:
    """The folder Snakemake starts in: this checkout for a named config, else the CI-scale run's."""
    return ROOT if CONFIG_PATH != CI_CONFIG_PATH else request.getfixturevalue("workdir")


@pytest.fixture(scope="module")
def tree(launch) -> Path:
    """The finished tree (the config's run folder) the figures are read from."""
    return launch / "runs" / CONFIG["run_name"] if "run_name" in CONFIG else launch


@pytest.fixture(scope="module")
def drawn(launch, tree, tmp_path_factory):
    """``{rule: (figure, caption text rendered here)}`` from each figure rule's own command."""
    out = snakemake(
        launch, "-n", "-p", "--forcerun", *RULES, "--configfile", str(CONFIG_PATH), "--replace-workflow-config"
    ).stdout
    # the figure command after its rule's log wrapper (workflow/rules/common.smk: logged)
    commands = [line[line.index("spectral-reach fig") :] for line in out.splitlines() if "spectral-reach fig" in line]
    tmp = tmp_path_factory.mktemp("figures")
    figures = {}
    with pytest.MonkeyPatch.context() as m:
        m.chdir(tree)
        m.setattr(style, "save", lambda fig, pdf, png, dpi: figures.__setitem__("current", fig))
        for command in commands:
            args = shlex.split(command)[1:]
            rule = "fig" + args[args.index("--pdf") + 1].split("/fig")[1][:2]
            for flag in ("--pdf", "--png", "--caption"):
                args[args.index(flag) + 1] = str(tmp / f"{rule}{flag[2:]}")
            main(args)
            figures[rule] = (figures.pop("current"), (tmp / f"{rule}caption").read_text())
    assert sorted(figures) == RULES
    return figures


def lines(ax) -> list[np.ndarray]:
    """The (x, y) of every line drawn in data coordinates (not axhline), finite points only."""
    out = []
    for line in ax.get_lines():
        if line.get_transform() == ax.transData:
            xy = np.asarray(line.get_xydata(), float)
            out.append(xy[np.isfinite(xy).all(axis=1)])
    return out


def points(ax) -> np.ndarray:
    xy = [a for a in lines(ax) if len(a)]
    return np.concatenate(xy) if xy else np.empty((0, 2))


def scattered(ax) -> np.ndarray:
    from matplotlib.collections import PathCollection

    xy = [np.asarray(c.get_offsets(), float) for c in ax.collections if isinstance(c, PathCollection)]
    return np.concatenate(xy) if xy else np.empty((0, 2))


def same_points(got: np.ndarray, expected, what: str) -> None:
    """Equal as multisets of (x, y) points."""
    expected = np.asarray(expected, float).reshape(-1, 2)
    assert got.shape == expected.shape, f"{what}: {len(got)} points drawn, {len(expected)} in the tables"
    key = lambda a: a[np.lexsort((a[:, 1], a[:, 0]))]
    np.testing.assert_allclose(key(got), key(expected), rtol=RTOL, err_msg=what)


def among(values, drawn_y: np.ndarray, what: str) -> None:
    for v in values:
        assert np.isclose(drawn_y, v, rtol=RTOL, atol=0).any(), f"{what}: caption value {v} is not drawn"


def seed_means(df: pd.DataFrame, by: list[str], x: str, y: str, positive: bool) -> np.ndarray:
    m = df.groupby(by, as_index=False)[y].mean()
    if positive:
        m = m[m[y] > 0]
    return m[[x, y]].to_numpy()


def caption_on_disk(tree, rule: str) -> str:
    return (tree / f"results/report/{rule}.rst").read_text()


def read(tree, path: str) -> pd.DataFrame:
    return (pd.read_parquet if path.endswith(".parquet") else pd.read_csv)(tree / path)


LM = CONFIG["datasets"]


@pytest.mark.parametrize("rule", RULES)
def test_the_caption_the_workflow_wrote_is_the_one_of_these_tables(drawn, tree, rule):
    assert drawn[rule][1] == caption_on_disk(tree, rule)


def test_fig01_draws_each_run_and_the_seed_means_of_chi_pos(drawn, tree):
    from spectral_reach.figures import fig01_scaling

    fig = drawn["fig01"][0]
    data = {}
    for col, name in enumerate(LM):
        runs, windows = (
            read(tree, f"results/lm/{name}/summary/runs.csv"),
            read(tree, f"results/lm/{name}/summary/lnp_windows.parquet"),
        )
        data[name] = (runs, windows)
        top, bottom = fig.get_axes()[col], fig.get_axes()[len(LM) + col]
        same_points(scattered(top), runs[["params", "final_train_loss"]].to_numpy(), f"{name} losses")
        expected = seed_means(windows, ["size", "step"], "step", "chi_pos", positive=True)
        same_points(points(bottom), expected, f"{name} chi_pos")
    fits = pd.concat([read(tree, f"results/lm/{n}/summary/fits.csv").assign(dataset=n) for n in LM], ignore_index=True)
    values = fig01_scaling.caption_values(data, fits[fits["loss"] == "train"])
    for col, d in enumerate(values["datasets"]):
        y = points(fig.get_axes()[len(LM) + col])[:, 1]
        among([v for s in d["chi_pos"]["sizes"] for v in (s["first"], s["peak"], s["last"]) if v > 0], y, d["name"])


def test_fig01_mean_of_a_positive_and_a_negative_seed_is_drawn_at_the_mean(tmp_path, monkeypatch):
    """The image twin's case: seeds +6.9e-7 and -4.7e-7 in one window; mean 1.1e-7 is drawn."""
    from spectral_reach.figures import fig01_scaling

    windows = pd.DataFrame(
        {"size": ["s"] * 4, "seed": [0, 1, 0, 1], "step": [10, 10, 20, 20], "chi_pos": [2e-6, 4e-6, 6.9e-7, -4.7e-7]}
    )
    runs = pd.DataFrame({"size": ["s", "s"], "seed": [0, 1], "params": [100, 100], "final_train_loss": [3.0, 3.1]})
    fits = pd.DataFrame([{"dataset": "twin", "determined": False, "reason": "one size", "points": 2}])
    figs = []
    monkeypatch.setattr(style, "save", lambda fig, *a: figs.append(fig))
    fig01_scaling.plot({"twin": (runs, windows)}, fits, "a.pdf", "a.png", width=4, height=4, dpi=50)
    same_points(points(figs[0].get_axes()[1]), [[10, 3e-6], [20, 1.1e-7]], "chi_pos")


def test_fig03_draws_the_seed_means_and_theory_of_its_tables(drawn, tree):
    fig = drawn["fig03"][0]
    left, right = fig.get_axes()[:2]
    dev, curves = read(tree, "results/rfm/deviations.csv"), read(tree, "results/rfm/theory.csv")
    dim = CONFIG["rfm"]["input_dim"]
    same_points(
        points(left),
        np.concatenate([np.c_[np.arange(1, dim + 1), data_spectrum(dim, a)] for a in sorted(dev["alpha"])]),
        "spectra",
    )
    means = [dev[["alpha", f"{c}_mean"]].to_numpy() for c in ("chi_loss", "chi_net", "chi_pos")]
    theory = [curves[["alpha", c]].to_numpy() for c in ("chi_pos_kernel", "chi_pos_teacher", "chi_pos_linear")]
    same_points(points(right), np.concatenate(means + theory), "LNP at initialisation")


def test_fig04_draws_the_ratios_its_caption_states(drawn, tree):
    from spectral_reach.figures import fig04_probe_ratio

    fig = drawn["fig04"][0]
    data = {n: read(tree, f"results/probe/{n}/summary/ratios.csv") for n in LM}
    values = fig04_probe_ratio.caption_values(data)
    for ax, d in zip(fig.get_axes(), values["datasets"]):
        params = data[d["name"]].groupby("size")["params"].first()
        expected = [
            (params[s], r) for w in d["windows"] for s, r in zip(d["sizes"], w["ratio"]) if np.isfinite(r) and r > 0
        ]
        same_points(points(ax), expected, d["name"])


def test_fig05_draws_chi_net_of_full_training_and_random_probes(drawn, tree):
    fig = drawn["fig05"][0]
    for ax, name in zip(fig.get_axes(), LM):
        lm = read(tree, f"results/lm/{name}/summary/lnp_windows.parquet")
        probe = read(tree, f"results/probe/{name}/summary/lnp_windows.parquet")
        expected = np.concatenate(
            [
                seed_means(lm, ["size", "step"], "step", "chi_net", positive=False),
                seed_means(probe[probe["backbone"] == "random"], ["size", "step"], "step", "chi_net", positive=False),
            ]
        )
        same_points(points(ax), expected, name)


def test_fig06_draws_the_cv_and_every_seed(drawn, tree):
    fig = drawn["fig06"][0]
    cv = read(tree, "results/checks/hutchinson_cv.csv")
    top = fig.get_axes()[0]
    measured = lines(top)[0]
    same_points(measured, cv[["k", "cv"]].to_numpy(), "CV")
    among([cv["cv"].iloc[0], cv["cv"].iloc[-1]], measured[:, 1], "CV")
    assert f"slope {cv['slope'].iloc[0]:.3f}" in top.get_legend().get_texts()[1].get_text()
    for ax, name in zip(fig.get_axes()[1:], LM):
        windows = read(tree, f"results/lm/{name}/summary/lnp_windows.parquet")
        positive = windows[windows["chi_pos"] > 0]  # every seed its own line: per-seed filtering is right here
        same_points(points(ax), positive[["step", "chi_pos"]].to_numpy(), name)


def test_fig07_draws_each_run_and_its_caption_is_their_mean(drawn, tree):
    from spectral_reach.analysis.claims import final

    fig = drawn["fig07"][0]
    for ax, name in zip(fig.get_axes(), LM):
        runs = read(tree, f"results/lm/{name}/summary/runs.csv")
        got = scattered(ax)
        same_points(got, runs[["params", "final_test_loss"]].to_numpy(), name)
        means = pd.DataFrame(got, columns=["x", "y"]).groupby("x")["y"].mean().sort_index().to_numpy()
        np.testing.assert_allclose(means, final(runs, "final_test_loss"), rtol=RTOL)


def test_fig08_draws_the_isocompute_seed_means(drawn, tree):
    from spectral_reach.figures import fig08_isocompute

    fig = drawn["fig08"][0]
    data = {}
    for row, name in enumerate(LM):
        loss = read(tree, f"results/lm/{name}/summary/isocompute_loss.csv")
        pos = read(tree, f"results/lm/{name}/summary/isocompute_chi_pos.csv")
        data[name] = (loss, pos)
        left, right = fig.get_axes()[2 * row], fig.get_axes()[2 * row + 1]
        same_points(points(left), seed_means(loss, ["budget", "params"], "params", "test_loss", False), name)
        same_points(points(right), seed_means(pos, ["budget", "params"], "params", "chi_pos", True), name)
        best = {
            b["budget"]: b["best"]
            for b in fig08_isocompute.caption_values({name: data[name]})["datasets"][0]["budgets"]
        }
        params = loss.groupby("size")["params"].first()
        drawn_best = sorted(line[np.argmin(line[:, 1]), 0] for line in lines(left) if len(line))
        assert drawn_best == sorted(params[s] for s in best.values()), name


def test_fig09_draws_vit_loss_curves_and_chi_pos(drawn, tree):
    from spectral_reach.figures import fig09_vit

    fig = drawn["fig09"][0]
    runs = read(tree, "results/vit/summary/runs.csv")
    windows = read(tree, "results/vit/summary/lnp_windows.parquet")
    curves = read(tree, "results/vit/summary/curves.parquet")
    pars = [p for p in fig09_vit.TITLES if p in set(runs["parametrization"])]
    axes = np.array(fig.get_axes()).reshape(2, len(pars))
    values = fig09_vit.caption_values(runs, windows)["parametrizations"]
    for col, (par, v) in enumerate(zip(pars, values)):
        c, w = curves[curves["parametrization"] == par], windows[windows["parametrization"] == par]
        same_points(points(axes[0, col]), seed_means(c, ["size", "step"], "step", "loss", False), f"{par} loss")
        bottom = points(axes[1, col])
        same_points(bottom, seed_means(w, ["size", "step"], "step", "chi_pos", False), f"{par} chi_pos")
        among([x for s in v["chi_pos"]["sizes"] for x in (s["first"], s["peak"], s["last"])], bottom[:, 1], par)


def test_fig10_fig11_draw_every_component_of_every_data_set_at_its_seed_means(drawn, tree):
    """One row of panels per data set, in the config's order (the paper's Figs. 10 and 11)."""
    from spectral_reach.figures import fig10_components

    fig = drawn["fig10"][0]
    names = CONFIG["datasets"]
    data = {
        n: (read(tree, f"results/lm/{n}/summary/lnp_windows.parquet"), read(tree, f"results/lm/{n}/summary/runs.csv"))
        for n in names
    }
    values = fig10_components.caption_values(data)["datasets"]
    panels = [ax for ax in fig.get_axes() if ax.get_ylabel()]
    assert len(panels) == len(names) * len(fig10_components.PANELS)
    for row, (name, (windows, _)) in enumerate(data.items()):
        axes = panels[row * len(fig10_components.PANELS) : (row + 1) * len(fig10_components.PANELS)]
        assert axes[0].get_title(loc="left") == name and values[row]["title"] == name
        for ax, (col, _) in zip(axes, fig10_components.PANELS):
            got = points(ax)
            same_points(got, seed_means(windows, ["size", "step"], "step", col, positive=True), f"{name} {col}")
            among([x for s in values[row][col]["sizes"] for x in (s["first"], s["last"]) if x > 0], got[:, 1], col)


def test_fig12_draws_the_spectrum_and_its_caption_rows(drawn, tree):
    fig = drawn["fig12"][0]
    spectrum = read(tree, "results/checks/entk_spectrum.parquet")
    shift = read(tree, "results/checks/entk_shift.csv")
    kept = spectrum[spectrum["lhat"] > 0]
    hist, scatter, reach = fig.get_axes()[:3]
    same_points(scattered(scatter), kept[["lhat", "chat_sq"]].to_numpy(), "projections")
    expected = []
    for _, g in kept.groupby("stage"):
        g = g.sort_values("lhat", ascending=False)
        expected.append(np.c_[g["lhat"], (g["lhat"] * g["chat_sq"]).cumsum()])
    same_points(points(reach), np.concatenate(expected), "reach")
    labels = " ".join(t.get_text() for t in fig.legends[0].get_texts())
    for r in shift.itertuples():
        assert f"{r.stage}: shift {r.shift:.2f}, χ_pos {r.chi_pos:.3g}" in labels

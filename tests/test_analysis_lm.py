"""Run summaries against hand-computed values; figure scripts on small synthetic tables."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spectral_reach.analysis import claims, lm
from spectral_reach.analysis.runs import StaleRun
from spectral_reach.figures import (
    caption,
    fig01_scaling,
    fig07_test_loss,
    fig08_isocompute,
    fig09_vit,
    fig10_components,
)

TEMPLATES = Path(__file__).resolve().parents[1] / "workflow/report"


def _fake_run(folder: Path, params: int, losses: list[float], test_loss: float) -> dict[str, str]:
    """A finished run's files, as the training loop writes them, with known values."""
    folder.mkdir(parents=True)
    steps = np.arange(len(losses))
    pd.DataFrame({"step": steps, "loss": losses, "tokens": 64 * (steps + 1)}).to_parquet(folder / "metrics.parquet")
    lnp = {c: np.linspace(0.1, 0.4, len(losses)) for c in ("delta", "chi_loss", "chi_net", "chi_pos", "loss")}
    pd.DataFrame({"step": steps, "window": steps // 2, "tokens": 64 * (steps + 1), **lnp}).to_parquet(
        folder / "lnp.parquet"
    )
    pd.DataFrame(
        {"step": [0, len(losses) - 1], "tokens": [64, 64 * len(losses)], "test_loss": [5.0, test_loss]}
    ).to_parquet(folder / "eval.parquet")
    done = {"params": params, "tokens": 64 * len(losses), "final_test_loss": test_loss, "train_s": 1.0, "lnp_s": 0.5,
            "spec": {"lr": 0.01}}  # fmt: skip
    (folder / "done.json").write_text(json.dumps(done))
    # the training job's params file (workflow/rules/settings.smk), its spec as the rule's JSON text
    (folder / "params.json").write_text(json.dumps({"spec": json.dumps({"lr": 0.01, "checkpoint_every": 5})}))
    return {
        name: str(folder / f"{name}.{'json' if name in ('done', 'settings') else 'parquet'}")
        for name in ("done", "metrics", "lnp", "eval")
    } | {"settings": str(folder / "params.json")}


def test_lm_summary_reads_the_files_the_rule_names(tmp_path):
    from spectral_reach.cli import main

    a = _fake_run(tmp_path / "a", 100, [4.0, 3.0, 2.0, 1.0], 1.5)
    b = _fake_run(tmp_path / "b", 300, [3.0, 2.0, 1.0, 0.5], 0.9)
    keys = json.dumps([{"size": "s", "seed": 0}, {"size": "l", "seed": 1}])
    files = [arg for name in ("done", "metrics", "lnp", "eval", "settings") for arg in (f"--{name}", a[name], b[name])]
    out = {k: str(tmp_path / f"{k}.parquet") for k in ("runs", "lnp", "curves", "fits")}
    outs = [arg for k, v in out.items() for arg in (f"--out-{k}", v)]
    settings = ["--final-fraction", "0.5", "--raw-steps", "2", "--fit-max-rel-error", "1.0"]
    main(["lm-summary", "--keys", keys, *files, *settings, *outs])
    runs = pd.read_parquet(out["runs"])
    assert runs[["size", "seed", "params"]].values.tolist() == [["s", 0, 100], ["l", 1, 300]]
    assert runs["final_train_loss"].tolist() == [1.5, 0.75]  # mean of the last half of the steps
    assert runs["final_test_loss"].tolist() == [1.5, 0.9] and runs["first_tokens"].tolist() == [64, 64]
    windows = pd.read_parquet(out["lnp"])
    assert windows[windows["size"] == "l"]["step"].tolist() == [0, 1, 2.5]  # two raw steps, then window 1's mean
    assert len(pd.read_parquet(out["curves"])) == 4
    fits = pd.read_parquet(out["fits"])  # two runs cannot determine three parameters
    assert fits["loss"].tolist() == ["train", "test"] and not fits["determined"].any()
    with pytest.raises(SystemExit, match="--settings: 1 files for 2 runs"):
        main(["lm-summary", "--keys", keys, *files[:-1], *settings, *outs])
    Path(b["settings"]).write_text(json.dumps({"spec": json.dumps({"lr": 0.005})}))  # the config's lr changed
    with pytest.raises(StaleRun, match=r"run \{'size': 'l', 'seed': 1\} .* lr: ran with 0.01, config says 0.005"):
        main(["lm-summary", "--keys", keys, *files, *settings, *outs])


def test_power_law_recovers_known_parameters():
    n = np.array([1e4, 3e4, 1e5, 3e5, 1e6, 3e6])
    fit = lm.power_law(n, 1.5 + 40.0 * n**-0.35)
    assert fit["E"] == pytest.approx(1.5, rel=1e-6)
    assert fit["alpha"] == pytest.approx(0.35, rel=1e-6)
    assert fit["A"] == pytest.approx(40.0, rel=1e-5)
    assert fit["alpha_err"] < 1e-6
    assert np.isnan(lm.power_law(n[:3], 1.5 + 40.0 * n[:3] ** -0.35)["alpha_err"])  # no spare point, no error bar


def test_fit_verdict_tells_determined_fits_from_degenerate_ones():
    n = np.array([1e4, 1e4, 3e4, 3e4, 1e5, 1e5])
    good = 1.5 + 40.0 * n**-0.35 + np.array([1, -1, 1, -1, 1, -1]) * 1e-3
    fit = lm.power_law(n, good)
    assert lm.fit_verdict(fit, good, 1.0) == {"determined": True, "reason": ""}
    flat = np.array([4.25, 4.26, 4.27, 4.26, 4.23, 4.24])  # the CIFAR twin's demo: no trend with size
    verdict = lm.fit_verdict(lm.power_law(n, flat), flat, 1.0)
    assert not verdict["determined"] and verdict["reason"].split(" = ")[0] in ("alpha", "E")
    three = lm.power_law(n[::2], good[::2])  # no spare point: no error bar, not determined
    assert lm.fit_verdict(three, good[::2], 1.0)["reason"] == "no error bar on alpha (3 points)"
    below = {**fit, "E": -28.8, "E_err": 1.0, "alpha_err": 0.0}
    assert lm.fit_verdict(below, good, 1e9)["reason"].startswith("E = -28.8 outside [0, ")


def test_undetermined_fit_is_drawn_and_captioned_as_no_fit(tmp_path):
    n = np.repeat([1.49e4, 4.32e4, 1.4e5], 2)
    runs = pd.DataFrame(
        {
            "size": np.repeat(["s", "m", "l"], 2),
            "seed": [0, 1] * 3,
            "params": n,
            "final_test_loss": [4.25, 4.26, 4.27, 4.28, 4.23, 4.22],
            "final_train_loss": [4.05, 4.06, 4.07, 4.08, 4.03, 4.02],
        }
    )
    fits = lm.loss_fits(runs, 1.0).query("loss == 'test'").assign(dataset="twin")
    fig07_test_loss.plot({"twin": runs}, fits, tmp_path / "f.pdf", tmp_path / "f.png", width=6, height=3, dpi=50)
    assert not fits["determined"].iloc[0]
    caption.render(TEMPLATES / "fig07.rst", tmp_path / "c.rst", fig07_test_loss.caption_values({"twin": runs}, fits))
    text = (tmp_path / "c.rst").read_text()
    assert "no power-law fit on these 6 runs (" in text and "``alpha =" not in text


def test_short_log_axes_get_readable_ticks():
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    from spectral_reach.figures.style import readable_log_ticks

    fig, (short, wide) = plt.subplots(1, 2)
    for ax, hi in ((short, 4e4), (wide, 1e7)):
        ax.set_xscale("log")
        ax.set_xlim(1.5e4, hi)
        readable_log_ticks(ax.xaxis, 1.5e4, hi)
    assert isinstance(short.xaxis.get_major_formatter(), ticker.EngFormatter)
    assert isinstance(short.xaxis.get_minor_formatter(), ticker.NullFormatter)
    fig.canvas.draw()
    labels = [t.get_text() for t in short.get_xticklabels() if t.get_text()]
    assert 1 <= len(labels) <= 6 and all(re.fullmatch(r"[0-9.]+k", label) for label in labels), labels
    assert not isinstance(wide.xaxis.get_major_formatter(), ticker.EngFormatter)  # two decades or more: defaults
    plt.close(fig)


def test_lnp_windows_raw_then_window_means():
    lnp = pd.DataFrame(
        {
            "step": [0, 1, 50, 51, 52, 100, 101],
            "window": [0, 0, 1, 1, 1, 2, 2],
            "tokens": [10, 20, 510, 520, 530, 1010, 1020],
            "chi_loss": 1.0,
            "chi_net": [2.0] * 7,
            "chi_pos": [0.5, 0.4, 0.3, 0.2, 0.1, 0.06, 0.02],
            "delta": 0.0,
            "loss": 3.0,
        }
    )
    out = lm.lnp_windows(lnp, raw_steps=2)
    assert out["step"].tolist() == [0, 1, 51, 100.5]
    assert out["chi_pos"].tolist() == pytest.approx([0.5, 0.4, 0.2, 0.04])
    assert out["chi_net_pos"].tolist() == pytest.approx([1.0, 0.8, 0.4, 0.08])
    assert out["n"].tolist() == [1, 1, 3, 2]
    # sd / sqrt(n): window 1 (0.3, 0.2, 0.1) has sd 0.1; window 2 (0.06, 0.02) has sd 0.02 * sqrt(2)
    assert out["chi_pos_se"].tolist()[2:] == pytest.approx([0.1 / 3**0.5, 0.02])
    assert out["chi_pos_se"].iloc[:2].isna().all()


def test_a_window_straddling_raw_steps_is_averaged_over_its_steps():
    """The paper config's first window (steps 0-49) has 40 raw rows and one mean of 10 steps; its
    mean must be that of its 50 measured steps, not of its 41 rows. Reference: the per-step table."""
    from spectral_reach.lnp.windows import log_windows, step_windows

    rng = np.random.default_rng(0)
    of = step_windows(log_windows(400, per_decade=3, width=50))
    steps = list(of)
    lnp = pd.DataFrame(
        {"step": steps, "window": [of[s] for s in steps], "tokens": [10 * s for s in steps], "chi_loss": 1.0,
         "chi_net": 2.0, "chi_pos": rng.lognormal(-12, 1, len(steps)), "delta": 0.0, "loss": 3.0}
    )  # fmt: skip
    lnp.loc[3, "chi_pos"] = np.nan  # a missing step is skipped, not counted
    windows = lm.lnp_windows(lnp, raw_steps=40).assign(size="s", seed=0)
    first = windows[windows["window"] == 0]
    assert first["n"].tolist() == [1] * 40 + [10]
    got = lm.window_means(first, ["size", "seed"], ["chi_pos", "chi_net"])
    want = lnp.loc[lnp["window"] == 0, "chi_pos"].mean()  # pandas skips the NaN
    assert got["chi_pos"].item() == pytest.approx(want, rel=1e-12)
    assert got["chi_pos"].item() != pytest.approx(first["chi_pos"].mean(), rel=1e-3)  # the 41-row mean
    assert got["chi_net"].item() == pytest.approx(2.0)
    # the claims table's first window (chi_pos falls, Fig. 1) is that mean
    from spectral_reach.analysis.claims_table import _ends

    assert _ends(windows, "chi_pos")["first"].item() == pytest.approx(want, rel=1e-12)
    # a window whose every value is missing stays missing
    none = lm.window_means(first.assign(chi_pos=np.nan), ["size", "seed"], ["chi_pos"])
    assert none["chi_pos"].isna().all()


def test_isocompute_interpolates_in_log_tokens():
    runs = pd.DataFrame(
        {"size": ["a", "b"], "seed": [0, 0], "params": [100.0, 1000.0], "tokens": [1e4, 1e4], "first_tokens": [10, 10]}
    )
    curves = pd.DataFrame(
        {
            "size": ["a"] * 3 + ["b"] * 3,
            "seed": 0,
            "tokens": [10, 100, 1e4] * 2,
            "test_loss": [5.0, 4.0, 2.0, 4.5, 3.0, 1.0],
        }
    )
    out = lm.isocompute(curves, runs, [6e5], "test_loss")
    # a: D = 6e5 / 600 = 1000 tokens, halfway (in log) between 100 and 1e4 -> 3.0; b: D = 100 -> 3.0
    assert out["tokens"].tolist() == pytest.approx([1000.0, 100.0])
    assert out["test_loss"].tolist() == pytest.approx([3.0, 3.0])
    assert lm.isocompute(curves, runs, [6e9], "test_loss").empty  # beyond every run
    assert lm.budgets(runs, 2) == pytest.approx(list(np.geomspace(6e4, 6e6, 4)[1:-1]))


def test_label_params():
    assert lm.label_params("1.2M") == 1.2e6 and lm.label_params("102.6K") == pytest.approx(102600)
    assert lm.label_params("s") is None


@pytest.fixture
def tables():
    rng = np.random.default_rng(0)
    runs, windows, curves = [], [], []
    for size, n in (("s", 1e4), ("m", 4e4), ("l", 1.6e5)):
        for seed in (0, 1):
            runs.append(
                {
                    "size": size,
                    "seed": seed,
                    "params": n,
                    "tokens": 1e5,
                    "first_tokens": 1000,
                    "final_train_loss": 2 + 30 * n**-0.4 + rng.normal(0, 0.01),
                    "final_test_loss": 2.1 + 30 * n**-0.4 + rng.normal(0, 0.01),
                }
            )
            steps = np.arange(0, 100, 5)
            windows.append(
                pd.DataFrame(
                    {
                        "size": size,
                        "seed": seed,
                        "step": steps,
                        "tokens": (steps + 1) * 1000,
                        "chi_loss": 1 / (1 + steps),
                        "chi_net": 1e3 * (1 + steps / 50),
                        "chi_pos": 1e-4 / (1 + steps) / n**0.2,
                        "chi_net_pos": 0.1,
                        "delta": 0.0,
                    }
                )
            )
            curves.append(
                pd.DataFrame(
                    {"size": size, "seed": seed, "tokens": (steps + 1) * 1000.0, "test_loss": 5 - np.log1p(steps) / 3}
                )
            )
    return pd.DataFrame(runs), pd.concat(windows), pd.concat(curves)


def test_figure_scripts_run_on_small_tables(tables, tmp_path):
    runs, windows, curves = tables
    kw = dict(width=8, height=4, dpi=50)
    fits = lm.loss_fits(runs, 1.0).set_index("loss")
    assert fits.loc["train", "alpha"] == pytest.approx(0.4, rel=0.2) and fits.loc["train", "determined"]
    train = pd.DataFrame([{**fits.loc["train"], "dataset": d} for d in ("a", "b")])
    fig01_scaling.plot(
        {"a": (runs, windows), "b": (runs, windows)}, train, tmp_path / "f1.pdf", tmp_path / "f1.png", **kw
    )
    test = pd.DataFrame([{**fits.loc["test"], "dataset": "a"}])
    fig07_test_loss.plot({"a": runs}, test, tmp_path / "f7.pdf", tmp_path / "f7.png", **kw)
    budgets = lm.budgets(runs, 2)
    iso = (lm.isocompute(curves, runs, budgets, "test_loss"), lm.isocompute(windows, runs, budgets, "chi_pos"))
    assert len(iso[0]) == 2 * 6
    fig08_isocompute.plot({"a": iso}, tmp_path / "f8.pdf", tmp_path / "f8.png", **kw)
    fig10_components.plot({"a": (windows, runs)}, tmp_path / "f10.pdf", tmp_path / "f10.png", **kw)

    def both(df):
        return pd.concat([df.assign(parametrization=p) for p in ("standard", "mup")])

    loss = both(windows[["size", "seed", "step"]].assign(loss=lambda d: 2.3 - d["step"] / 100))
    fig09_vit.plot(both(runs), both(windows), loss, tmp_path / "f9.pdf", tmp_path / "f9.png", **kw)
    for name in ("f1", "f7", "f8", "f9", "f10"):
        assert (tmp_path / f"{name}.pdf").stat().st_size > 1000 and (tmp_path / f"{name}.png").stat().st_size > 1000


def test_measured_values_fill_the_caption_templates(tables, tmp_path):
    runs, windows, curves = tables
    fit = lm.power_law(runs["params"], runs["final_train_loss"])
    fit = {**fit, **lm.fit_verdict(fit, runs["final_train_loss"], 1.0)}
    fits = pd.DataFrame([{"dataset": "a", "loss": "train", **fit}])
    m = fig01_scaling.caption_values({"a": (runs, windows)}, fits)
    d = m["datasets"][0]
    assert d["sizes"] == ["s", "m", "l"] and d["loss_ordered"]
    # chi_pos = 1e-4 / (1 + step) / N^0.2 over steps 0..95: it starts at its peak and ends 96x lower
    first = 1e-4 / 1e4**0.2
    s = d["chi_pos"]["sizes"][0]
    assert (s["first"], s["peak"], s["last"], s["fall"]) == pytest.approx((first, first, first / 96, 96))
    assert d["chi_pos"]["falls"] and d["chi_pos"]["ordered"]
    caption.render(TEMPLATES / "fig01.rst", tmp_path / "fig01.rst", m)
    text = (tmp_path / "fig01.rst").read_text()
    assert f"{first:.2g} / {first:.2g} / {first / 96:.2g}" in text
    assert "(peak over last: 96 / 96 / 96)" in text
    assert "It ends below its first step for every size" in text and "the last windows fall with size" in text
    # the caption names what it states: the curve's first point, not the first window's mean (the
    # claims table's), which the figure does not draw
    assert "``chi_pos`` at the first measured\n  step (the curve's first point) / its peak / the last window: " in text

    comp = fig10_components.caption_values({"a": (windows, runs)})
    (one,) = comp["datasets"]
    assert one["chi_loss"]["falls"] and one["chi_net"]["rises"] and not one["chi_net"]["falls"]
    caption.render(TEMPLATES / "components.rst", tmp_path / "fig10.rst", comp)
    assert "(grows for every size)" in (tmp_path / "fig10.rst").read_text()

    iso = (
        lm.isocompute(curves, runs, lm.budgets(runs, 2), "test_loss"),
        lm.isocompute(windows, runs, lm.budgets(runs, 2), "chi_pos"),
    )
    m8 = fig08_isocompute.caption_values({"a": iso})
    # every size has the same loss curve in tokens, so at a fixed budget the smallest size (most tokens) wins,
    # and chi_pos (lower for larger N, falling in steps) ranks the sizes the other way round
    assert [b["best"] for b in m8["datasets"][0]["budgets"]] == ["s", "s"]
    caption.render(TEMPLATES / "fig08.rst", tmp_path / "fig08.rst", m8)

    def both(df):
        return pd.concat([df.assign(parametrization=p) for p in ("standard", "mup")])

    m9 = fig09_vit.caption_values(both(runs), both(windows))
    assert [p["name"] for p in m9["parametrizations"]] == ["standard", "muP"]
    caption.render(TEMPLATES / "fig09.rst", tmp_path / "fig09.rst", m9)
    assert "(falls with size)" in (tmp_path / "fig09.rst").read_text()


def test_fig08_caption_names_the_best_size_of_the_drawn_losses_when_a_run_has_no_chi_pos_there():
    """Seen on the rehearsal: at the largest budget some runs had no LNP window yet, and the caption's
    best size was taken from the runs with one only, not from the losses the figure draws."""
    loss = pd.DataFrame(
        {"budget": 1e6, "size": ["s", "s", "l", "l"], "seed": [0, 1, 0, 1], "params": [10, 10, 100, 100],
         "test_loss": [3.0, 1.0, 2.5, 2.5]}
    )  # fmt: skip
    pos = loss.drop(columns="test_loss").assign(chi_pos=[0.1, 0.2, 0.3, 0.4]).iloc[[0, 2, 3]]  # s, seed 1: none
    [budget] = fig08_isocompute.caption_values({"a": (loss, pos)})["datasets"][0]["budgets"]
    assert budget["best"] == "s"  # seed means 2.0 < 2.5; with s's chi_pos rows only it would be "l" (3.0)
    assert budget["rank_corr"] == pytest.approx(-1.0)  # over s (3.0, 0.1) and l (2.5, 0.35)


def test_a_rising_or_unordered_curve_is_called_so():
    runs = pd.DataFrame({"size": ["s", "l"], "seed": 0, "params": [10, 100]})
    windows = pd.DataFrame(
        {"size": ["s", "s", "l", "l"], "seed": 0, "step": [0, 9, 0, 9], "chi_pos": [1.0, 2.0, 1.0, 3.0]}
    )
    d = claims.dynamics(windows, runs, "chi_pos")
    assert not d["falls"] and d["rises"] and not d["ordered"]
    assert [s["last"] for s in d["sizes"]] == [2.0, 3.0]


def test_a_template_naming_an_unmeasured_value_names_the_template(tmp_path):
    with pytest.raises(SystemExit, match=r"fig01\.rst: 'datasets' is undefined; this figure measures: other"):
        caption.render(TEMPLATES / "fig01.rst", tmp_path / "out.rst", {"other": 1})
    assert not (tmp_path / "out.rst").exists()


def test_size_tables_go_by_parameter_count_as_the_papers_do():
    """The rule's params list sizes by name ('102.6K' after '1.1M'); Tables 1-4 go by count."""
    import yaml

    from spectral_reach.analysis.tables import lm_table, vit_table

    paper = yaml.safe_load((Path(__file__).parents[1] / "config/paper.yaml").read_text())
    for d in paper["datasets"]:
        sizes = dict(sorted(paper["lm"][d]["sizes"].items()))  # by name, as the rule passes them
        table = lm_table(sizes, paper["data"][d].get("vocab_size", 256), 0.01)  # images: the schema default
        assert table["params"].is_monotonic_increasing and set(table["size"]) == set(sizes)
    vit = {p: dict(sorted(paper["vit"][p]["sizes"].items())) for p in ("standard", "mup")}
    table = vit_table(vit, 0.01)
    assert list(dict.fromkeys(table["parametrization"])) == ["standard", "mup"]
    for _, rows in table.groupby("parametrization"):
        assert rows["params"].is_monotonic_increasing

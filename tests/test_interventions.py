"""The intervention study (issue 39): its table, fits and claims rows on synthetic tables built to
hold and to fail, Fig. 13 drawn with and without per-layer LNP, and the config checks of variants."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from test_claims_table import SIZES

from spectral_reach.analysis import claims_table as ct
from spectral_reach.analysis import interventions
from spectral_reach.config_checks import problems


def tables(pos: dict[str, list[float]], loss: dict[str, list[float]]):
    """Runs and windows of ``base`` and one variant ``v``: last-window chi_pos ``pos[variant][size index]``
    and final test loss ``loss[variant][size index]``, seeds 0 and 1 alike (seed 1 shifted by 1%)."""
    runs, windows = [], []
    for variant in ("base", "v"):
        for k, (size, n) in enumerate(SIZES.items()):
            for seed in (0, 1):
                shift = 1 + 0.01 * seed
                runs.append({"variant": variant, "size": size, "seed": seed, "params": n,
                             "final_test_loss": loss[variant][k] * shift, "final_train_loss": loss[variant][k]})  # fmt: skip
                for w, value in enumerate([1e-3, pos[variant][k] * shift]):
                    windows.append({"variant": variant, "size": size, "seed": seed, "window": w, "step": 10.0**w,
                                    "chi_pos": value, "chi_net": 10.0 * (w + 1), "delta": 2.0, "delta_update": 1.0})  # fmt: skip
    return pd.DataFrame(runs), pd.DataFrame(windows)


BASE_POS, BASE_LOSS = [3e-5, 2e-5, 1e-5], [3.0, 2.6, 2.3]


def test_the_table_holds_seed_means_of_the_last_window_per_variant_and_size():
    runs, windows = tables({"base": BASE_POS, "v": [2e-5, 1e-5, 5e-6]}, {"base": BASE_LOSS, "v": [2.9, 2.5, 2.2]})
    table = interventions.table(runs, windows)
    assert table[["variant", "size"]].values.tolist() == [[v, s] for v in ("base", "v") for s in SIZES]
    row = table.set_index(["variant", "size"]).loc[("v", "m")]
    assert row["chi_pos"] == pytest.approx(1e-5 * 1.005) and row["final_test_loss"] == pytest.approx(2.5 * 1.005)
    assert row["chi_net"] == 20.0 and row["update_over_gd"] == 0.5 and row["seeds"] == 2
    fits = interventions.fits(runs, 0.5)
    assert set(fits["variant"]) == {"base", "v"} and set(fits["loss"]) == {"train", "test"}


def test_lower_chi_pos_with_lower_loss_holds_and_the_reverse_does_not():
    agree = tables({"base": BASE_POS, "v": [2e-5, 1e-5, 5e-6]}, {"base": BASE_LOSS, "v": [2.9, 2.5, 2.2]})
    row = ct.lower_reach_lower_loss(*agree, "v", "t")
    assert (row["verdict"], row["seeds_holding"], row["seeds"], row["figure"]) == (ct.HOLDS, 2, 2, "13")
    assert "3.02e-05 -> 2.01e-05 and 3.015 -> 2.914" in row["evidence"]  # size s, seed means
    higher_and_lower = tables({"base": BASE_POS, "v": [4e-5, 3e-5, 2e-5]}, {"base": BASE_LOSS, "v": [2.9, 2.5, 2.2]})
    assert ct.lower_reach_lower_loss(*higher_and_lower, "v", "t")["verdict"] == ct.FAILS  # SGD-like: reach, not loss
    mixed = tables({"base": BASE_POS, "v": [2e-5, 3e-5, 5e-6]}, {"base": BASE_LOSS, "v": [2.9, 2.5, 2.2]})
    assert ct.lower_reach_lower_loss(*mixed, "v", "t")["verdict"] == ct.FAILS  # one size against it
    negative = tables({"base": BASE_POS, "v": [-2e-5, 1e-5, 5e-6]}, {"base": BASE_LOSS, "v": [2.9, 2.5, 2.2]})
    assert ct.lower_reach_lower_loss(*negative, "v", "t")["verdict"] == ct.UNDETERMINED


def test_the_claims_table_gets_a_row_per_variant():
    runs, windows = tables({"base": BASE_POS, "v": [2e-5, 1e-5, 5e-6]}, {"base": BASE_LOSS, "v": [2.9, 2.5, 2.2]})
    table = ct.claims_table({}, {}, None, {}, None, rfm_seeds=1, frozen_rtol=0.01, hutchinson_sigmas=2,
                            interventions={"stories": {"runs": runs, "lnp": windows}})  # fmt: skip
    assert table["claim"].tolist() == ["intervention v: lower chi_pos than base goes with lower test loss"]
    assert table["task"].tolist() == ["stories"]


@pytest.mark.parametrize("with_groups", [True, False])
def test_fig13_draws_with_and_without_per_layer_lnp(tmp_path, with_groups):
    from spectral_reach.figures import fig13_interventions

    runs, windows = tables({"base": BASE_POS, "v": [2e-5, 1e-5, 5e-6]}, {"base": BASE_LOSS, "v": [2.9, 2.5, 2.2]})
    groups = pd.DataFrame(
        [
            {"run": 0, "group": g, "window": w, "step": 10.0**w, "chi_pos": 1e-4 / (w + 1), "chi_net": 5.0 * (w + 1)}
            for g in ("embedding", "head")
            for w in range(3)
        ]  # fmt: skip
    )
    pdf, png = tmp_path / "f.pdf", tmp_path / "f.png"
    fig13_interventions.plot(runs, windows, groups if with_groups else None, "l", pdf, png, width=12, height=3, dpi=60)
    assert pdf.stat().st_size > 0 and png.stat().st_size > 0
    values = fig13_interventions.caption_values(interventions.table(runs, windows), interventions.fits(runs, 0.5), "l")
    assert [v["name"] for v in values["variants"]] == ["base", "v"]
    assert values["variants"][1]["chi_pos"] == pytest.approx(5e-6 * 1.005) and not math.isnan(
        values["variants"][1]["loss"]
    )


def test_a_variant_missing_what_its_optimizer_needs_is_named():
    from workflow_run import CI_CONFIG, merged

    name = next(iter(CI_CONFIG["lm"]))
    config = merged(CI_CONFIG, {"lm": {name: {"variants": {"sgd": {"optimizer": "sgd"}, "w": {"schedule": "wsd"}}}}})
    found = problems(config)
    assert any(f"lm.{name}.variants.sgd.momentum is missing" in p for p in found)
    assert any(f"lm.{name}.variants.w.decay_fraction is missing" in p for p in found)

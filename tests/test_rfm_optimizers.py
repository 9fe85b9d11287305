"""The optimizer question in the random-feature model (issue 39): each optimizer's step against its
formula, the exponent fit, and Fig. 14 drawn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from spectral_reach import rfm_optimizers as ro
from spectral_reach.rfm import RandomFeatureModel, data_spectrum

SMALL = dict(n=256, n_test=256, dim=32, steps=6, seed=0, points=8)


def test_gradient_descent_moves_the_loss_as_gradient_descent():
    _, rows = ro.train(1.0, 16, "gd", {"lr_scale": 1.0}, **SMALL)
    assert [r["update_over_gd"] for r in rows] == pytest.approx([1.0] * len(rows), rel=1e-12)


def test_natural_gradient_step_is_the_preconditioned_gradient():
    """At step 0 (a = 0) ``delta_update / delta = g^T (F + ridge I)^-1 g / g^T g``, formed by hand from the
    same draws as the run's."""
    _, rows = ro.train(1.0, 16, "ng", {"lr": 0.5, "ridge": 1e-3}, **SMALL)
    g = torch.Generator().manual_seed(0)
    spectrum = data_spectrum(32, 1.0)
    beta = torch.randn(32, generator=g, dtype=torch.float64)
    beta = beta / (beta.pow(2) @ torch.from_numpy(spectrum)).sqrt()
    x, y = ro._data(256, spectrum, beta, g)
    ro._data(256, spectrum, beta, g)  # the test set, drawn next
    phi = RandomFeatureModel(torch.randn(16, 32, generator=g, dtype=torch.float64)).features(x)
    grad = -(phi.T @ y.squeeze(1)) / 256
    precond = torch.linalg.solve(phi.T @ phi / 256 + 1e-3 * torch.eye(16, dtype=torch.float64), grad)
    assert rows[0]["step"] == 0
    assert rows[0]["update_over_gd"] == pytest.approx(float(grad @ precond / (grad @ grad)), rel=1e-8)


def test_adam_trains_and_every_run_is_measured_at_log_spaced_steps():
    final, rows = ro.train(1.5, 16, "adam", {"lr": 0.03}, **SMALL)
    assert [r["step"] for r in rows] == ro.log_steps(6, 8) == [0, 1, 2, 3, 4, 5]
    assert final["test_loss"] < 1.0 and all(np.isfinite(r["chi_pos"]) for r in rows)


def test_the_exponent_of_a_power_law_is_recovered():
    widths = [16, 32, 64, 128, 256]
    finals = pd.DataFrame(
        [
            {"s": 1.0, "budget": 10, "optimizer": o, "width": n, "seed": seed, "test_loss": 0.05 + 2 * n**-a}
            for o, a in (("gd", 0.2), ("ng", 0.6))
            for n in widths
            for seed in (0, 1)
        ]  # fmt: skip
    )
    fits = ro.exponents(finals, 0.5).set_index("optimizer")
    assert fits.loc["gd", "alpha"] == pytest.approx(0.2, rel=1e-3)
    assert fits.loc["ng", "alpha"] == pytest.approx(0.6, rel=1e-3)
    assert fits["determined"].all()
    # the local slope between 128 and 256, by hand
    want = -np.log((0.05 + 2 * 256**-0.6) / (0.05 + 2 * 128**-0.6)) / np.log(2)
    assert fits.loc["ng", "local_slope"] == pytest.approx(want, rel=1e-12)


def test_fig14_draws(tmp_path):
    from spectral_reach.figures import fig14_rfm_optimizers

    finals, curves = ro.run(1.0, [8, 16, 32], [4], {"gd": {"lr_scale": 1.0}, "ng": {"lr": 0.5, "ridge": 1e-3}},
                            n=128, n_test=128, dim=16, seeds=1, points=8)  # fmt: skip
    fits = ro.exponents(finals, 0.5)
    pdf, png = tmp_path / "f.pdf", tmp_path / "f.png"
    fig14_rfm_optimizers.plot(finals, curves, fits, {"gd": 0.12}, pdf, png, width=10, height=3, dpi=60)
    assert png.stat().st_size > 0
    values = fig14_rfm_optimizers.caption_values(fits, {"gd": 0.12})
    assert [f["optimizer"] for f in values["fits"]] == ["gd", "ng"] and values["published"] == {"gd": 0.12}

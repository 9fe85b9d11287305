"""Verification experiments: the reduced-output eNTK agrees with LNP restricted to the same
outputs; the Hutchinson CV follows K^(-1/2)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from spectral_reach.checks import hutchinson_cv, reduced_entk
from spectral_reach.lnp import measure
from spectral_reach.models import llama


@pytest.fixture
def tiny():
    model = llama.build({"layers": 1, "hidden": 16, "ff": 32, "heads": 2}, 40, 16, seed=1, attn="eager").double()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 40, (1, 12), generator=g)
    return model, ids[:, :-1], ids[:, 1:]


def test_reduced_entk_equals_lnp_on_the_same_outputs(tiny):
    model, x, y = tiny
    positions, vocab = [2, 5, 10], [0, 3, 7, 11, 20]
    spec = reduced_entk.spectrum(model, x, y, positions, vocab)
    assert len(spec.lhat) == 15 and float(spec.lhat.sum()) == pytest.approx(1.0)
    assert float(spec.chat_sq.sum()) == pytest.approx(1.0)
    g = reduced_entk.reduced_gradient(model, x, y, positions, vocab)
    rec = measure(
        reduced_entk.ReducedOutputs(model, positions, vocab),
        reduced_entk.linear_loss,
        (x, g * x.shape[0]),
        hutchinson=None,
        count_units=lambda o, t: o.shape[0],
    )
    assert rec.chi_pos == pytest.approx(spec.chi_pos, rel=1e-7)
    assert rec.g_sq == pytest.approx(float(g.pow(2).sum()), rel=1e-12)


def test_shift_summary_is_the_weighted_log_mean(tiny):
    model, x, y = tiny
    spec = reduced_entk.spectrum(model, x, y, [1, 4], [2, 3, 5])
    s = reduced_entk.summary(spec, "init")
    assert s["shift"] == pytest.approx(float((spec.chat_sq * spec.lhat.log()).sum()))
    assert s["chi_pos"] == pytest.approx(float((spec.lhat * spec.chat_sq).sum()))


def test_hutchinson_cv_follows_inverse_square_root():
    model = llama.build({"layers": 1, "hidden": 16, "ff": 32, "heads": 2}, 40, 16, seed=0)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 40, (4, 13), generator=g)
    values = hutchinson_cv.draws(model, (ids[:, :-1], ids[:, 1:]), 512, 32, seed=0)
    assert len(values) == 512 and np.all(values > 0)
    cv = hutchinson_cv.cv_by_k(values, [1, 2, 4, 8, 16, 32])
    fit = hutchinson_cv.fit_slope(cv)
    assert fit["slope"] == pytest.approx(-0.5, abs=0.12)
    assert cv["groups"].tolist() == [512, 256, 128, 64, 32, 16]


@pytest.mark.parametrize("ks", [[1, 4], [1, 2, 4], [1, 2, 4, 8]])
def test_the_slope_fit_takes_any_number_of_ks_from_two(ks):
    cv = pd.DataFrame({"k": ks, "cv": [0.3 * k**-0.5 for k in ks]})
    fit = hutchinson_cv.fit_slope(cv)
    assert fit["slope"] == pytest.approx(-0.5, rel=1e-12) and fit["cv1_fit"] == pytest.approx(0.3, rel=1e-12)
    assert np.isnan(fit["slope_err"]) == (len(ks) <= 3)

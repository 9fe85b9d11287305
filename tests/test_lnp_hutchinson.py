"""Hutchinson estimate of sum_i ||J_i||_F^2: unbiased, and its spread falls as K^(-1/2)."""

import numpy as np
import pytest
import torch
from models import cases

from spectral_reach.lnp import measure


@pytest.fixture(scope="module")
def draws_and_exact():
    model, loss_fn, batch, _ = cases(torch.float64)["embed_linear"]
    exact = measure(model, loss_fn, batch, hutchinson=None).j_sq
    gen = torch.Generator().manual_seed(11)
    record = measure(model, loss_fn, batch, hutchinson=64 * 40, generator=gen)
    return np.asarray(record.j_sq_draws), exact, record


def test_mean_of_draws_is_within_three_standard_errors(draws_and_exact):
    draws, exact, record = draws_and_exact
    stderr = draws.std(ddof=1) / np.sqrt(draws.size)
    assert abs(draws.mean() - exact) < 3 * stderr
    assert record.j_sq == pytest.approx(draws.mean(), rel=1e-12)
    assert stderr < 0.02 * exact  # the check has teeth: 3 SE is a few percent of the value


def test_coefficient_of_variation_falls_as_inverse_sqrt_k(draws_and_exact):
    draws, _, _ = draws_and_exact
    ks = np.array([1, 2, 4, 8, 16, 32, 64])
    cvs = []
    for k in ks:
        groups = draws[: (draws.size // k) * k].reshape(-1, k).mean(1)
        cvs.append(groups.std(ddof=1) / groups.mean())
    slope = np.polyfit(np.log(ks), np.log(cvs), 1)[0]
    assert -0.6 <= slope <= -0.4, slope


def test_generator_makes_draws_reproducible_and_global_rng_untouched():
    model, loss_fn, batch, other = cases(torch.float32)["llama"]
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = measure(model, loss_fn, batch, other, hutchinson=3, generator=torch.Generator().manual_seed(5))
    b = measure(model, loss_fn, batch, other, hutchinson=3, generator=torch.Generator().manual_seed(5))
    c = measure(model, loss_fn, batch, other, hutchinson=3, generator=torch.Generator().manual_seed(6))
    assert torch.equal(torch.get_rng_state(), state)
    assert a.j_sq_draws == b.j_sq_draws and a.j_sq_draws != c.j_sq_draws
    assert len(a.j_sq_draws) == 3 and len(a.j_sq_draws_measure) == 3

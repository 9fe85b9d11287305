"""The optimizer question in the theory model (issue 39; after Ramani and Jain, "On the Optimizer
Dependence of Neural Scaling Laws"): does the scaling exponent of ``L(N) ~ N^-alpha`` depend on the
optimizer, and where in the spectrum does each one's step sit?

The random-feature model of :mod:`.rfm` (width ``N``, frozen ``W``, readout ``a`` from zero) learns a
linear teacher ``y = beta . x / ||.||`` (``beta ~ N(0, I_D)``) on power-law data
(``x ~ N(0, diag(lambda))``, ``lambda_k ∝ k^-s``) by full-batch steps on ``n`` training samples,
for a fixed budget of ``T`` steps, with ``F = Phi^T Phi / n`` the feature covariance and ``g`` the
readout's gradient:

* ``gd``: ``a <- a - lr g`` with ``lr = lr_scale / lambda_max(F)`` (the stable rate of the top mode);
* ``adam``: ``torch.optim.Adam`` at ``lr``;
* ``ng``: natural gradient, ``a <- a - lr (F + ridge I)^-1 g``: every eigen-direction of ``F`` at the
  same rate.

With a budget, gradient descent moves the ``k``-th mode at ``1 - lr mu_k`` per step: the tail
modes that a wider model adds are learnt slowly, so the test loss gains less from ``N`` than the
preconditioned optimizers'. The exponent is read two ways: the fit of ``L(N) = E + A N^-alpha`` and, free of the asymptote
``E``, the local slope ``-d log L / d log N`` between the two largest widths. LNP (exact, full
batch, self variant) is measured at log-spaced steps:
``chi_pos`` of the gradient step, and ``delta_update / delta``, the loss change of the optimizer's own
step over gradient descent's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .analysis.lm import fit_verdict, power_law
from .lnp import measure
from .rfm import RandomFeatureModel, data_spectrum, half_mse, sample_data

OPTIMIZERS = ("gd", "adam", "ng")


def _data(n: int, spectrum: np.ndarray, beta: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
    x = sample_data(n, spectrum, g)
    y = (x @ beta).unsqueeze(1)
    return x, y


def log_steps(steps: int, count: int) -> list[int]:
    """Step 0 and ``count`` log-spaced steps from 1 to the last, ``steps - 1``."""
    grid = np.unique(np.round(np.logspace(0, np.log10(max(steps - 1, 1)), count)).astype(int))
    return sorted({0, *grid.tolist(), steps - 1})


def train(
    s: float,
    width: int,
    optimizer: str,
    settings: dict,
    n: int,
    n_test: int,
    dim: int,
    steps: int,
    seed: int,
    points: int,
) -> tuple[dict, list[dict]]:
    """One run: its final test loss, and LNP rows at step 0 and ``points`` log-spaced steps."""
    g = torch.Generator().manual_seed(seed)
    spectrum = data_spectrum(dim, s)
    beta = torch.randn(dim, generator=g, dtype=torch.float64)
    beta = beta / (beta.pow(2) @ torch.from_numpy(spectrum)).sqrt()  # unit target variance
    x, y = _data(n, spectrum, beta, g)
    x_test, y_test = _data(n_test, spectrum, beta, g)
    model = RandomFeatureModel(torch.randn(width, dim, generator=g, dtype=torch.float64))
    a = model.readout.weight
    with torch.no_grad():
        phi = model.features(x)
        cov = phi.T @ phi / n
    if optimizer == "adam":
        opt = torch.optim.Adam([a], lr=settings["lr"])
    elif optimizer == "gd":
        lr = settings["lr_scale"] / float(torch.linalg.eigvalsh(cov)[-1])
        opt = torch.optim.SGD([a], lr=lr)
    elif optimizer == "ng":
        precondition = torch.linalg.inv(cov + settings["ridge"] * torch.eye(width, dtype=cov.dtype))
        opt = torch.optim.SGD([a], lr=settings["lr"])
    else:
        raise ValueError(f"optimizer {optimizer!r} is not one of {OPTIMIZERS}")
    measured, rows = set(log_steps(steps, points)), []
    for step in range(steps):
        opt.zero_grad()
        half_mse(model(x), y).backward()
        if optimizer == "ng":
            a.grad = (precondition @ a.grad.T).T
        before = a.detach().clone()
        opt.step()
        if step in measured:
            lr = opt.param_groups[0]["lr"]
            update = [(before - a.detach()) / lr]
            with torch.no_grad():
                now = a.detach().clone()
                a.copy_(before)
            rec = measure(model, half_mse, (x, y), hutchinson=None, update=update)
            with torch.no_grad():
                a.copy_(now)
            rows.append(
                {
                    "step": step,
                    "chi_pos": rec.chi_pos,
                    "chi_net": rec.chi_net,
                    "loss": rec.loss,
                    "update_over_gd": rec.delta_update / rec.delta,
                }  # fmt: skip
            )
    with torch.no_grad():
        test = float(half_mse(model(x_test), y_test))
    return {"test_loss": test, "train_loss": rows[-1]["loss"]}, rows


def run(
    s: float,
    widths: list[int],
    budgets: list[int],
    optimizers: dict[str, dict],
    n: int,
    n_test: int,
    dim: int,
    seeds: int,
    points: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(finals, trajectories)`` of data exponent ``s``: one row per (budget, optimizer, width, seed),
    and its LNP rows."""
    finals, curves = [], []
    for budget in budgets:
        for name, settings in optimizers.items():
            for width in widths:
                for seed in range(seeds):
                    key = {"s": s, "budget": budget, "optimizer": name, "width": width, "seed": seed}
                    final, rows = train(s, width, name, settings, n, n_test, dim, budget, seed, points)
                    finals.append({**key, **final})
                    curves += [{**key, **r} for r in rows]
    return pd.DataFrame(finals), pd.DataFrame(curves)


def exponents(finals: pd.DataFrame, max_rel_error: float) -> pd.DataFrame:
    """Per (s, budget, optimizer), on the seed-mean final test loss: ``L(N) = E + A N^-alpha`` fitted,
    with whether it determines its parameters (:func:`.analysis.lm.fit_verdict`), and the local
    exponent between the two largest widths, ``-d log L / d log N`` (no asymptote assumed)."""
    rows = []
    for (s, budget, name), g in finals.groupby(["s", "budget", "optimizer"], sort=False):
        mean = g.groupby("width")["test_loss"].mean().sort_index()
        n, loss = mean.index.to_numpy(float), mean.to_numpy(float)
        fit = power_law(n, loss)
        local = -np.log(loss[-1] / loss[-2]) / np.log(n[-1] / n[-2])
        rows.append({"s": s, "budget": budget, "optimizer": name, **fit, **fit_verdict(fit, loss, max_rel_error),
                     "local_slope": local})  # fmt: skip
    return pd.DataFrame(rows)

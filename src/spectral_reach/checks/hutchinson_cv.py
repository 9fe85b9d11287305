"""Convergence of the Hutchinson estimate of ``sum_i ||J_i||_F^2`` (paper App. B.1, Fig. 6).

``draws`` single-vector estimates are taken on one batch of a trained model (each draw is
unbiased; the LM head is counted exactly in every draw, as :func:`spectral_reach.lnp.measure`
does). For each K the draws are split into disjoint groups of K, and the coefficient of
variation of the group means is ``CV(K) = sd / mean``; independent draws give
``CV(K) = CV(1) K^(-1/2)``, so the fitted log-log slope should be close to -1/2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data import Contexts, FixedSet
from ..lnp import LogitsOnly, measure
from ..models import llama
from ..models.llama import lm_loss


def draws(
    model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor], count: int, per_call: int, seed: int
) -> np.ndarray:
    """``count`` single-vector estimates of ``sum_i ||J_i||_F^2`` (``per_call`` vectors per forward pass)."""
    out = []
    gen = torch.Generator().manual_seed(seed)
    wrapped = LogitsOnly(model)
    while len(out) < count:
        rec = measure(wrapped, lm_loss, batch, hutchinson=per_call, generator=gen)
        out.extend(rec.j_sq_draws)
    return np.asarray(out[:count])


def cv_by_k(values: np.ndarray, ks: list[int]) -> pd.DataFrame:
    """``CV(K)`` from disjoint groups of K draws, with the number of groups used."""
    rows = []
    for k in ks:
        groups = len(values) // k
        if groups < 2:
            raise ValueError(f"{len(values)} draws give fewer than two groups of K={k}")
        means = values[: groups * k].reshape(groups, k).mean(1)
        rows.append({"k": k, "cv": means.std(ddof=1) / means.mean(), "groups": groups})
    return pd.DataFrame(rows)


def fit_slope(cv: pd.DataFrame) -> dict[str, float]:
    """Least-squares slope and intercept of ``log CV`` against ``log K``, with the slope's standard
    error (NaN for three Ks or fewer: numpy scales the covariance by ``n - 4`` residual degrees)."""
    x, y = np.log(cv["k"].to_numpy(float)), np.log(cv["cv"].to_numpy(float))
    if len(x) > 3:
        (slope, intercept), cov = np.polyfit(x, y, 1, cov=True)
        err = float(np.sqrt(cov[0, 0]))
    else:
        slope, intercept = np.polyfit(x, y, 1)
        err = float("nan")
    return {"slope": float(slope), "slope_err": err, "cv1_fit": float(np.exp(intercept))}


def run(
    model_dir: str | Path,
    data_dir: str | Path,
    context_length: int,
    samples: int,
    count: int,
    per_call: int,
    seed: int,
    ks: list[int],
) -> tuple[pd.DataFrame, dict[str, float]]:
    """``CV(K)`` on ``samples`` training contexts of the model saved in ``model_dir``, and its fit."""
    contexts = Contexts(Path(data_dir) / "train.bin", context_length)
    batch = FixedSet(contexts, samples, "samples").draw(samples, seed, 0)
    cv = cv_by_k(draws(llama.load(model_dir), batch, count, per_call, seed), ks)
    return cv, fit_slope(cv)

"""Summaries of language-model runs (paper App. C.1, D.1, D.2).

* Final train loss: the mean training loss over the last ``fraction`` of steps.
* LNP curves: single steps before ``raw_steps``; after it, means over each measurement window
  (the paper's 50-step windows), placed at the window's mean step.
* Power law ``L(N) = E + A N^-alpha`` fitted by least squares on every (size, seed) point, with
  standard errors from the covariance of the fit.
* Isocompute: at budget ``C = 6 N D`` (N all parameters, D training tokens) a run of size N is
  read at ``D = C / (6 N)`` by linear interpolation in log tokens.
"""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pandas as pd

COMPONENTS = ["chi_loss", "chi_net", "chi_pos", "delta"]


def final_train_loss(metrics: pd.DataFrame, fraction: float) -> float:
    n = max(1, math.ceil(len(metrics) * fraction))
    return float(metrics["loss"].iloc[-n:].mean())


def lnp_windows(lnp: pd.DataFrame, raw_steps: int, unit: str = "tokens") -> pd.DataFrame:
    """Raw rows before ``raw_steps``, window means from there on; adds ``chi_net_pos``, and
    ``chi_pos_se`` = sd(chi_pos) / sqrt(n), the standard error of a window's mean (NaN for a raw row
    or a one-step window). ``unit`` is the column counting what the run has seen (``tokens``, ``images``)."""
    lnp = lnp.assign(chi_net_pos=lnp["chi_net"] * lnp["chi_pos"])
    # the optimizer's own step (runs since issue 39 record it)
    cols = COMPONENTS + ["chi_net_pos", "loss"] + (["delta_update"] if "delta_update" in lnp else [])
    raw = lnp[lnp["step"] < raw_steps][["step", "window", unit, *cols]].assign(n=1)
    later = lnp[lnp["step"] >= raw_steps]
    means = later.groupby("window", as_index=False).agg(
        step=("step", "mean"),
        n=("step", "size"),
        **{unit: (unit, "mean")},
        **{c: (c, "mean") for c in cols},
        chi_pos_se=("chi_pos", "sem"),  # pandas: sd (ddof 1) / sqrt(n)
    )
    return pd.concat([raw, means], ignore_index=True).sort_values("step", ignore_index=True)


def window_means(windows: pd.DataFrame, keys: list[str], columns: list[str]) -> pd.DataFrame:
    """Per ``keys``: each column's mean over every measured step of the rows given,
    ``sum_r n_r x_r / sum_r n_r``. A row of :func:`lnp_windows` stands for ``n`` steps (a raw row
    for one), so a window that straddles ``raw_steps`` (the paper config's first: 40 raw steps and
    a mean of 10) weighs each step once; NaN values are skipped, and a column with none left is NaN."""
    n = windows["n"] if "n" in windows else pd.Series(1.0, index=windows.index)
    parts = {}
    for c in columns:
        parts[f"{c}:sum"] = windows[c] * n
        parts[f"{c}:n"] = n.where(windows[c].notna())
    sums = pd.DataFrame(parts).groupby([windows[k] for k in keys]).sum(min_count=1)
    return pd.DataFrame({c: sums[f"{c}:sum"] / sums[f"{c}:n"] for c in columns}).reset_index()


def power_law(n: np.ndarray, loss: np.ndarray) -> dict[str, float]:
    """Fit ``L = E + A N^-alpha``; returns E, A, alpha and their standard errors (NaN without spare
    points; every value NaN with fewer points than parameters)."""
    from scipy.optimize import OptimizeWarning, curve_fit

    n, loss = np.asarray(n, float), np.asarray(loss, float)
    if len(n) < 3:
        return {**dict.fromkeys(("E", "E_err", "A", "alpha", "alpha_err"), np.nan), "points": len(n)}
    x = n / n.min()

    def f(x, e, a, alpha):
        return e + a * x**-alpha

    p0 = (loss.min() * 0.9, max(loss.max() - loss.min() * 0.9, 1e-3), 0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)  # no covariance without spare points: errors are NaN
        popt, pcov = curve_fit(f, x, loss, p0=p0, maxfev=20000)
    err = np.sqrt(np.diag(pcov)) if len(n) > 3 and np.all(np.isfinite(pcov)) else np.full(3, np.nan)
    e, a, alpha = popt
    return {"E": e, "E_err": err[0], "A": a * n.min() ** alpha, "alpha": alpha, "alpha_err": err[2], "points": len(n)}


def fit_verdict(fit: dict[str, float], loss: np.ndarray, max_rel_error: float) -> dict[str, object]:
    """Whether a power-law fit determines its parameters: ``determined`` and, if not, the ``reason``.

    Not determined: an exponent or asymptote without an error bar (no spare point), or with a
    standard error above ``max_rel_error`` times its value, or an asymptote ``E`` outside
    ``[0, min loss]`` (a loss cannot fall below 0, nor level off above its smallest value).
    """
    loss = np.asarray(loss, float)
    for name in ("alpha", "E"):
        value, err = fit[name], fit[f"{name}_err"]
        if not np.isfinite(err):
            return {"determined": False, "reason": f"no error bar on {name} ({fit['points']} points)"}
        if err > max_rel_error * abs(value):
            return {"determined": False, "reason": f"{name} = {value:.3g} +- {err:.2g}"}
    if not 0 <= fit["E"] <= loss.min():
        return {"determined": False, "reason": f"E = {fit['E']:.3g} outside [0, {loss.min():.3g}]"}
    return {"determined": True, "reason": ""}


def loss_fits(runs: pd.DataFrame, max_rel_error: float) -> pd.DataFrame:
    """``L(N) = E + A N^-alpha`` fitted on every run's final train loss and final test loss (one
    row each, ``loss`` = train or test), with the verdict of :func:`fit_verdict`."""
    rows = []
    for loss in ("train", "test"):
        values = runs[f"final_{loss}_loss"].to_numpy(float)
        fit = power_law(runs["params"].to_numpy(float), values)
        rows.append({"loss": loss, **fit, **fit_verdict(fit, values, max_rel_error)})
    return pd.DataFrame(rows)


def isocompute(curves: pd.DataFrame, runs: pd.DataFrame, budgets: list[float], column: str) -> pd.DataFrame:
    """``column`` of every run read at ``D = C / (6 N)`` tokens for each budget ``C``; runs that end before
    or start after that point are left out. ``curves`` has size, seed, tokens and ``column``."""
    rows = []
    for (size, seed), g in curves.dropna(subset=[column]).groupby(["size", "seed"]):
        n = float(runs.loc[(runs["size"] == size) & (runs["seed"] == seed), "params"].iloc[0])
        g = g.sort_values("tokens")
        for c in budgets:
            d = c / (6 * n)
            if g["tokens"].iloc[0] <= d <= g["tokens"].iloc[-1]:
                value = np.interp(np.log(d), np.log(g["tokens"].to_numpy(float)), g[column].to_numpy(float))
                rows.append({"budget": c, "size": size, "seed": seed, "params": n, "tokens": d, column: value})
    return pd.DataFrame(rows)


def budgets(runs: pd.DataFrame, count: int) -> list[float]:
    """``count`` log-spaced budgets strictly inside the range that every run covers, from the largest
    ``6 N D_first`` to the smallest ``6 N D_last`` (``runs`` has params, first_tokens, tokens)."""
    lo = (6 * runs["params"] * runs["first_tokens"]).max()
    hi = (6 * runs["params"] * runs["tokens"]).min()
    if not lo < hi:
        return []
    return list(np.geomspace(lo, hi, count + 2)[1:-1])


_SUFFIX = {"K": 1e3, "M": 1e6, "B": 1e9}
_LABEL = re.compile(r"([0-9]+(?:\.([0-9]+))?)([KMB])")


def label_params(name: str) -> float | None:
    """``'1.2M' -> 1.2e6``, ``'102.6K' -> 102600``; ``None`` for names that are not counts."""
    m = _LABEL.fullmatch(name)
    return float(m.group(1)) * _SUFFIX[m.group(3)] if m else None


def label_matches(name: str, count: int, tolerance: float = 0.01) -> bool:
    """Whether ``count`` agrees with the table label ``name``: it rounds to the label at the label's
    precision ('1.2M' holds 1.15M-1.25M) or lies within ``tolerance`` of it ('229.7K' vs 229,824)."""
    m = _LABEL.fullmatch(name)
    if not m:
        return False
    unit = _SUFFIX[m.group(3)]
    rounds = round(count / unit, len(m.group(2) or "")) == float(m.group(1))
    return rounds or abs(count / (float(m.group(1)) * unit) - 1) <= tolerance

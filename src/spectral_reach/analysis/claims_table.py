"""Every claim of the paper, judged on a run's own tables: ``results/claims.csv`` and ``claims.md``.

One row per claim, task and figure, computed from the summaries the figures draw, never typed:

* ``verdict``: ``holds`` (on every seed, or on the one quantity the claim is about),
  ``does not hold``, or ``undetermined`` (a number it needs is missing, not finite, or a fit is
  too uncertain to say);
* ``seeds_holding`` of ``seeds``: on how many seeds it holds where it is judged per seed (empty
  where it is judged on a seed mean or a single model: ``judged_on`` says which);
* ``evidence``: the numbers it rests on (seed means per size, smallest model first, unless said).

The comparisons are the plain ones the paper states, on the measurement windows of Fig. 1:
``first`` is a run's first window (its start), ``last`` its last window (the end of training). A
window mean of chi_pos that is not positive (the cross variant's interference: the step on ``B``
raises the loss on ``B'``) says nothing about a position in the spectrum, so a seed resting on one
is undetermined, as an Eq. 12 ratio of such a mean is (:mod:`.probe`).
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd

from ..report_html import page
from .claims import by_size
from .interventions import BASE, last_window
from .lm import window_means

COLUMNS = ["claim", "figure", "task", "verdict", "seeds_holding", "seeds", "judged_on", "evidence"]
HOLDS, FAILS, UNDETERMINED = "holds", "does not hold", "undetermined"
WHY = (
    "Why a claim does not hold at demo scale, measured on the embedded default and the showcase, and the "
    "larger budgets tried: docs/findings.md."
)


def _row(claim: str, figure: str, task: str, verdict: str, evidence: str, **counts: object) -> dict:
    return {"claim": claim, "figure": figure, "task": task, "verdict": verdict, "evidence": evidence, **counts}


def _fmt(values: Iterable[float]) -> str:
    return " / ".join(f"{v:.3g}" for v in values)


def _finite(values: Iterable[float]) -> bool:
    return all(isinstance(v, (int, float, np.floating)) and math.isfinite(v) for v in values)


def _positive(values: Iterable[float]) -> bool:
    values = list(values)
    return _finite(values) and all(v > 0 for v in values)


def _per_seed(
    claim: str, figure: str, task: str, holds: dict[int, bool | None], evidence: str, judged_on: str = "each seed"
) -> dict:
    """A claim judged on each seed: holds on all of them, fails on any, undetermined where a seed's
    numbers are missing (``None``)."""
    known = [h for h in holds.values() if h is not None]
    if len(known) < len(holds) or not holds:
        verdict = UNDETERMINED
    else:
        verdict = HOLDS if all(known) else FAILS
    return _row(claim, figure, task, verdict, evidence, seeds_holding=sum(known), seeds=len(holds), judged_on=judged_on)


def _ends(windows: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per (size, seed): the mean of ``column`` over the run's first and last measurement window."""
    keys = ["size", "seed"]
    first_w = windows.groupby(keys)["window"].transform("min")
    last_w = windows.groupby(keys)["window"].transform("max")
    first = window_means(windows[windows["window"] == first_w], keys, [column]).set_index(keys)[column]
    last = window_means(windows[windows["window"] == last_w], keys, [column]).set_index(keys)[column]
    return pd.DataFrame({"first": first, "last": last}).reset_index()


def _order(runs: pd.DataFrame) -> list[str]:
    return list(by_size(runs).index)


def _decreasing(values: list[float]) -> bool | None:
    """Strictly decreasing; ``None`` (undetermined) unless every value is finite and positive."""
    if not _positive(values):
        return None
    return bool(np.all(np.diff(values) < 0))


def _first_to_last(
    windows: pd.DataFrame, runs: pd.DataFrame, column: str, ends_lower: bool, claim: str, task: str, figure: str
) -> dict:
    """``column``'s last window below (``ends_lower``) or above its first, for every size, on each seed."""
    ends, order = _ends(windows, column), _order(runs)
    holds = {}
    for seed, g in ends.groupby("seed"):
        pairs = g.set_index("size").loc[order]
        ok = _positive(pairs["first"]) and _positive(pairs["last"])
        moved = pairs["last"] < pairs["first"] if ends_lower else pairs["last"] > pairs["first"]
        holds[int(seed)] = bool(moved.all()) if ok else None
    means = ends.groupby("size")[["first", "last"]].mean().loc[order]
    ratio = "" if ends_lower else " ({:.2g}x)"
    evidence = f"{column} first -> last window, sizes {' / '.join(order)}: " + ", ".join(
        f"{a:.3g} -> {b:.3g}" + ratio.format(b / a) for a, b in zip(means["first"], means["last"])
    )
    return _per_seed(claim, figure, task, holds, evidence)


def falls(windows: pd.DataFrame, runs: pd.DataFrame, task: str, figure: str, column: str = "chi_pos") -> dict:
    """``column`` ends below where it started, for every size, on each seed."""
    return _first_to_last(windows, runs, column, True, f"{column} falls over training", task, figure)


def grows(windows: pd.DataFrame, runs: pd.DataFrame, task: str, figure: str, column: str = "chi_net") -> dict:
    """``column`` ends above where it started, for every size, on each seed (feature learning)."""
    return _first_to_last(windows, runs, column, False, f"{column} grows under feature learning", task, figure)


def reach(windows: pd.DataFrame, runs: pd.DataFrame, task: str, figure: str) -> dict:
    """Larger models end at lower chi_pos: the last window decreases strictly with size, on each seed."""
    ends, order = _ends(windows, "chi_pos"), _order(runs)
    last = ends.pivot(index="seed", columns="size", values="last")[order]
    holds = {int(seed): _decreasing(list(row)) for seed, row in last.iterrows()}
    evidence = f"last-window chi_pos, sizes {' / '.join(order)}: {_fmt(last.mean())}"
    if "chi_pos_se" in windows:  # the noise the gaps between sizes are read against
        se = _ends(windows, "chi_pos_se").pivot(index="seed", columns="size", values="last")[order]
        evidence += f" (largest standard error of a seed's last-window mean: {_fmt(se.max())})"
        evidence += "; " + _gaps(last, se, order)
    return _per_seed("larger models end at lower chi_pos (spectral reach)", figure, task, holds, evidence)


def _gaps(last: pd.DataFrame, se: pd.DataFrame, order: list[str]) -> str:
    """Each size's last window minus the next larger size's, in combined standard errors
    ``(x_i - x_{i+1}) / sqrt(se_i^2 + se_{i+1}^2)``, per seed: positive is the claimed order, and
    under 2 in size the two sizes are not told apart by the window's own noise."""
    z = (last.to_numpy()[:, :-1] - last.to_numpy()[:, 1:]) / np.hypot(se.to_numpy()[:, :-1], se.to_numpy()[:, 1:])
    pairs = ", ".join(f"{a}-{b}" for a, b in zip(order, order[1:]))
    per_seed = "; ".join(f"seed {seed}: {' / '.join(f'{v:.2g}' for v in row)}" for seed, row in zip(last.index, z))
    return f"{pairs} gaps in combined standard errors (positive: ordered), {per_seed}"


def power_law(runs: pd.DataFrame, fits: pd.DataFrame, task: str, column: str = "final_train_loss") -> dict:
    """The final loss falls with N on each seed, and the fitted ``L = E + A N^-alpha`` is determined
    (its fit verdict); falling but undetermined is ``undetermined``."""
    order = _order(runs)
    table = runs.pivot(index="seed", columns="size", values=column)[order]
    holds = {int(seed): _decreasing(list(row)) for seed, row in table.iterrows()}
    fit = fits[fits["loss"] == column.removeprefix("final_").removesuffix("_loss")].iloc[0]
    row = _per_seed(
        "final loss follows a power law in N",
        "1",
        task,
        holds,
        f"final train loss, sizes {' / '.join(order)}: {_fmt(table.mean())}; fit alpha = {fit['alpha']:.3g} "
        f"+- {fit['alpha_err']:.2g}, E = {fit['E']:.3g}" + (f" ({fit['reason']})" if not fit["determined"] else ""),
    )
    if row["verdict"] == HOLDS and not (bool(fit["determined"]) and fit["alpha"] > 0):
        row["verdict"] = UNDETERMINED
    return row


def frozen_chi_net(probe_windows: pd.DataFrame, task: str, rtol: float) -> dict:
    """On a frozen backbone chi_net stays constant: the spread ``max / min - 1`` of its window means
    over a probe's training is at most ``rtol``, for every size and backbone, on each probe seed."""
    keys = ["size", "seed", "backbone", "window"]
    spread = window_means(probe_windows, keys, ["chi_net"]).set_index(keys)["chi_net"]
    spread = spread.groupby(["size", "seed", "backbone"]).agg(lambda s: s.max() / s.min() - 1)
    holds = {int(seed): (bool((s <= rtol).all()) if _finite(s) else None) for seed, s in spread.groupby(level="seed")}
    evidence = f"largest spread of chi_net over probe training: {spread.max():.2g} (tolerance {rtol:g})"
    return _per_seed("chi_net stays constant on a frozen backbone", "5", task, holds, evidence)


def probe_ratio(ratios: pd.DataFrame, task: str) -> list[dict]:
    """Eq. 12: the pretrained-backbone probe reaches lower chi_pos than the random one (ratio < 1),
    per time window, for every size, on each probe seed; an undefined ratio is undetermined."""
    rows = []
    for (t0, t1), g in ratios.groupby(["t0", "t1"]):
        holds = {}
        for seed, s in g.groupby("seed"):
            values = list(s["ratio"])
            holds[int(seed)] = bool(all(v < 1 for v in values)) if _finite(values) else None
        means = g.groupby("size", sort=False)["ratio"].mean()
        if "params" in g:  # smallest first, as every other row, whatever order the config lists sizes in
            means = means.loc[_order(g)]
        evidence = f"chi_pos(pretrained) / chi_pos(random), sizes {' / '.join(means.index)}: {_fmt(means)}"
        rows.append(
            _per_seed(
                f"the pretrained-backbone probe reaches lower chi_pos than the random one, t in [{t0:g}, {t1:g})",
                "4",
                task,
                holds,
                evidence,
            )
        )
    return rows


def hutchinson_rate(cv: pd.DataFrame, sigmas: float) -> dict:
    """The CV of the Hutchinson estimate falls as K^-1/2: the fitted slope within ``sigmas`` standard
    errors of -1/2."""
    slope, err = float(cv["slope"].iloc[0]), float(cv["slope_err"].iloc[0])
    if not _finite([slope, err]):
        verdict = UNDETERMINED
    else:
        verdict = HOLDS if abs(slope + 0.5) <= sigmas * err else FAILS
    evidence = f"slope of log CV vs log K: {slope:.3f} +- {err:.2g} (K = {_fmt(cv['k'])}; within {sigmas:g} se of -0.5)"
    return _row("the Hutchinson CV falls as K^-1/2", "6", "Hutchinson check", verdict, evidence, judged_on="one model")


def entk_shift(shift: pd.DataFrame) -> dict:
    """Training moves the eNTK loss gradient toward smaller eigenvalues: the chat^2-weighted mean of
    log lhat is lower after training than at initialisation."""
    by = shift.set_index("stage")["shift"]
    init, trained = float(by["init"]), float(by["trained"])
    verdict = UNDETERMINED if not _finite([init, trained]) else HOLDS if trained < init else FAILS
    evidence = f"weighted mean log eigenvalue: {init:.3g} at init -> {trained:.3g} trained"
    return _row(
        "the eNTK loss gradient moves toward smaller eigenvalues", "12", "eNTK check", verdict, evidence,
        judged_on="one model",
    )  # fmt: skip


def rfm_ipr(deviations: pd.DataFrame, seeds: int) -> dict:
    """RFM chi_pos follows the kernel's inverse participation ratio ``sum mu^2 / (sum mu)^2``: the seed
    mean within one seed standard deviation of it, at every alpha."""
    within = deviations["chi_pos_kernel_within_spread"].astype(bool)
    evidence = "deviation of the seed mean from the prediction, alpha " + ", ".join(
        f"{a:g}: {d:+.0%}" for a, d in zip(deviations["alpha"], deviations["dev_chi_pos_kernel"])
    )
    return _row(
        "RFM chi_pos follows the kernel's inverse participation ratio", "3", "random-feature models",
        HOLDS if within.all() else FAILS, evidence, seeds=seeds, judged_on="seed mean per alpha",
    )  # fmt: skip


def lower_reach_lower_loss(runs: pd.DataFrame, windows: pd.DataFrame, variant: str, task: str) -> dict:
    """Sec. 6-7's premise for an intervention: a variant that ends at lower chi_pos than the base runs
    ends at lower test loss, and one that ends higher at higher: the signs of the two differences from
    the base run of the same size and seed agree at every size, on each seed."""
    ends = runs.merge(last_window(windows), on=["variant", "size", "seed"]).set_index(["variant", "size", "seed"])
    order, holds = _order(runs), {}
    for seed in sorted(runs["seed"].unique()):
        agree = []
        for size in order:
            b, v = (ends.loc[(name, size, seed)] for name in (BASE, variant))
            if not _positive([b["chi_pos"], v["chi_pos"]]) or not _finite([b["final_test_loss"], v["final_test_loss"]]):
                agree = None
                break
            agree.append(np.sign(v["chi_pos"] - b["chi_pos"]) == np.sign(v["final_test_loss"] - b["final_test_loss"]))
        holds[int(seed)] = None if agree is None else bool(all(agree))
    means = ends.groupby(level=["variant", "size"])[["chi_pos", "final_test_loss"]].mean()
    evidence = f"last-window chi_pos and final test loss, {BASE} -> {variant}, sizes {' / '.join(order)}: " + ", ".join(
        f"{means.loc[(BASE, s), 'chi_pos']:.3g} -> {means.loc[(variant, s), 'chi_pos']:.3g} and "
        f"{means.loc[(BASE, s), 'final_test_loss']:.4g} -> {means.loc[(variant, s), 'final_test_loss']:.4g}"
        for s in order
    )
    claim = f"intervention {variant}: lower chi_pos than {BASE} goes with lower test loss"
    return _per_seed(claim, "13", task, holds, evidence)


def claims_table(
    lm: dict[str, dict[str, pd.DataFrame]],
    probe: dict[str, dict[str, pd.DataFrame]],
    vit: dict[str, pd.DataFrame] | None,
    checks: dict[str, pd.DataFrame],
    rfm: pd.DataFrame | None,
    *,
    rfm_seeds: int,
    frozen_rtol: float,
    hutchinson_sigmas: float,
    interventions: dict[str, dict[str, pd.DataFrame]] | None = None,
) -> pd.DataFrame:
    """Every claim the run's tables can judge (see the module docstring).

    ``lm``: data set -> ``runs``, ``lnp`` (window means), ``fits``; ``probe``: data set -> ``lnp``,
    ``ratios``; ``vit``: ``runs`` and ``lnp`` with a ``parametrization`` column; ``checks``: ``hutchinson`` and
    ``entk`` where the run has them; ``interventions``: data set -> ``runs`` and ``lnp`` with a
    ``variant`` column (``base`` and each variant).
    """
    rows = []
    for task, t in lm.items():
        runs, windows = t["runs"], t["lnp"]
        rows += [
            falls(windows, runs, task, "1"),
            reach(windows, runs, task, "1"),
            power_law(runs, t["fits"], task),
            grows(windows, runs, task, "5"),
        ]
        if task in probe:
            rows += [frozen_chi_net(probe[task]["lnp"], task, frozen_rtol), *probe_ratio(probe[task]["ratios"], task)]
    for par, label in (("standard", "ViT, standard"), ("mup", "ViT, muP")):
        if vit is not None and (vit["runs"]["parametrization"] == par).any():
            runs, windows = (vit[k][vit[k]["parametrization"] == par] for k in ("runs", "lnp"))
            rows += [falls(windows, runs, label, "9"), reach(windows, runs, label, "9")]
    if "hutchinson" in checks:
        rows.append(hutchinson_rate(checks["hutchinson"], hutchinson_sigmas))
    if rfm is not None:
        rows.append(rfm_ipr(rfm, rfm_seeds))
    if "entk" in checks:
        rows.append(entk_shift(checks["entk"]))
    for task, t in (interventions or {}).items():
        for variant in sorted(set(t["runs"]["variant"]) - {BASE}):
            rows.append(lower_reach_lower_loss(t["runs"], t["lnp"], variant, task))
    table = pd.DataFrame(rows).reindex(columns=COLUMNS)
    table["seeds_holding"] = table["seeds_holding"].astype("Int64")
    table["seeds"] = table["seeds"].astype("Int64")
    return table


def _counts(table: pd.DataFrame) -> str:
    counts = table["verdict"].value_counts()
    return (
        f"{counts.get(HOLDS, 0)} hold, {counts.get(FAILS, 0)} do not hold, "
        f"{counts.get(UNDETERMINED, 0)} undetermined, of {len(table)}"
    )


def markdown(table: pd.DataFrame, run_name: str) -> str:
    """The table as the report and a reader see it, with a count of verdicts first."""
    head = (
        f"# Claims of the paper in run '{run_name}'\n\n{_counts(table)} (computed from this run's tables: "
        f"src/spectral_reach/analysis/claims_table.py). {WHY}\n\n"
    )
    shown = table.assign(
        seeds=[
            "" if pd.isna(s) else (f"{h} of {s}" if not pd.isna(h) else f"{s} pooled")
            for h, s in zip(table["seeds_holding"], table["seeds"])
        ]
    ).drop(columns="seeds_holding")
    return head + shown.to_markdown(index=False) + "\n"


def html(table: pd.DataFrame, run_name: str) -> str:
    """The table as a page of the Snakemake report: the verdict counts, then one row per claim, its
    verdict coloured."""
    colours = {HOLDS: "#d8f0d8", FAILS: "#f6d5d5", UNDETERMINED: "#eeeeee"}
    rows = "".join(
        "<tr>"
        + "".join(
            f'<td style="background:{colours[r.verdict]}">{r.verdict}</td>'
            if c == "verdict"
            else f"<td>{_cell(v)}</td>"
            for c, v in zip(COLUMNS, (getattr(r, c) for c in COLUMNS))
        )
        + "</tr>"
        for r in table.itertuples()
    )
    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    body = f"<p>{_counts(table)}. {WHY}</p><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    return page(f"Claims of the paper in run '{run_name}'", body)


def _cell(value: object) -> str:
    import html as escape

    return "" if pd.isna(value) else escape.escape(str(value))

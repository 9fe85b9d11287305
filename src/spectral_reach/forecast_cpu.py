"""What the study's CPU jobs cost: the checks (Figs. 6 and 12) and the random-feature study (Fig. 3),
each timed on this machine's CPU for one unit of its work and scaled by how many units it does.

    hutchinson_cv  seconds = ceil(draws / per_call) * t_call     t_call: one ``measure`` of
                   ``per_call`` vectors on ``samples`` contexts of the checked size, at initialisation
    entk_spectrum  seconds = 2 * t_spectrum                     t_spectrum: one reduced eNTK in float64
                   (the job takes two: at initialisation and trained)
    rfm_lnp        seconds = seeds * t_seed                     per alpha (each alpha is its own job)

Each unit runs once untimed first (allocation, first-call costs), then once timed: the work of a
unit does not depend on the trained weights or the data's values, only on their shapes, so random
tokens and an initialised model time it. Rows have the training forecast's columns
(:mod:`.train.forecast`): ``steps`` counts units, ``t_step`` is seconds per unit.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable

import torch

log = logging.getLogger(__name__)

KINDS = ("hutchinson_cv", "entk_spectrum", "rfm_lnp")


def unit_seconds(rule: str, unit: Callable[[], Any]) -> float:
    """Seconds of ``unit()``'s second call (the first is untimed)."""
    log.info("%s: one untimed unit of work, then one timed", rule)
    unit()
    t = time.perf_counter()
    unit()
    seconds = time.perf_counter() - t
    log.info("%s: %.3g s per unit", rule, seconds)
    return seconds


def _model(spec: dict[str, Any], attn: str) -> torch.nn.Module:
    """The checked run's model at initialisation, with the attention its check loads it with."""
    from .models import llama

    return llama.build(spec["size"], spec["vocab_size"], spec["context_length"], spec["seed"], attn=attn)


def _contexts(spec: dict[str, Any], n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random contexts as :class:`..data.Contexts` gives them: ``context_length`` tokens, inputs and targets shifted by one."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, spec["vocab_size"], (n, spec["context_length"]), generator=g)
    return ids[:, :-1], ids[:, 1:]


def hutchinson_unit(spec: dict[str, Any], c: dict[str, Any]) -> tuple[Callable[[], Any], int, int]:
    """One ``measure`` call of the Hutchinson check, its call count and the model's parameters."""
    from .checks.hutchinson_cv import draws

    model, batch = _model(spec, "sdpa"), _contexts(spec, c["samples"])
    calls = math.ceil(c["draws"] / c["per_call"])
    return (lambda: draws(model, batch, c["per_call"], c["per_call"], 0)), calls, _count(model)


def entk_unit(spec: dict[str, Any], c: dict[str, Any]) -> tuple[Callable[[], Any], int, int]:
    """One reduced eNTK spectrum of the Fig. 12 check (two per job) and the model's parameters."""
    from .checks.reduced_entk import spectrum

    model = _model(spec, "eager").double()
    x, y = _contexts(spec, 1)
    vocab = list(range(c["vocab_count"]))
    return (lambda: spectrum(model, x, y, c["positions"], vocab)), 2, _count(model)


def rfm_unit(c: dict[str, Any]) -> tuple[Callable[[], Any], int, int]:
    """One seed of an RFM job (``seeds`` per job) and the readout's parameters."""
    from .rfm import run_seed

    return (lambda: run_seed(1.0, c["n_samples"], c["input_dim"], c["width"], 0)), c["seeds"], c["width"]


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forecast_row(job: dict[str, Any]) -> dict[str, Any]:
    """One CPU job kind timed: ``job`` holds ``rule``, ``group``, ``size``, ``count`` (jobs of this
    kind), ``settings`` (the job's config section) and, for the checks, ``spec`` (the checked run's)."""
    rule, c = job["rule"], job["settings"]
    if rule == "hutchinson_cv":
        unit, units, params = hutchinson_unit(job["spec"], c)
    elif rule == "entk_spectrum":
        unit, units, params = entk_unit(job["spec"], c)
    elif rule == "rfm_lnp":
        unit, units, params = rfm_unit(c)
    else:
        raise ValueError(f"no CPU forecast for rule {rule!r} (known: {', '.join(KINDS)})")
    t = unit_seconds(rule, unit)
    hours = units * t / 3600
    return {
        **{key: job[key] for key in ("rule", "group", "size", "count")},
        "params": params,
        "steps": units,
        "t_step": t,
        "t_lnp": 0.0,
        "t_eval": 0.0,
        "n_lnp": 0,
        "n_eval": 0,
        "lnp_fraction": 0.0,
        "hours": hours,
        "runs_per_gpu": 1,
        "gain": 1.0,
        "device_hours": hours,
        "device_hours_all": hours * job["count"],
    }

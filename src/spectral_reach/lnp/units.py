"""Loss units: what a mean loss averages over, found from the loss itself.

A training loss is a mean over ``n`` loss units, ``L = (1/n) sum_u l_u(f_u, y_u)``, each unit a
slice ``f_u`` of the output along some of its dimensions, and ``n`` sets the batch-size-free
``chi_loss = sqrt(n ||g||^2 ...)`` and ``chi_net = sqrt(||J||^2 / n ...)``. Which dimensions of
the output ``f`` (shape ``(b, d_1, ..., d_k)``) lie inside a unit and which the loss averages
over is read off the loss at (a point near) the model's outputs:

* **coupled** (inside a unit): changing one element changes the gradient of other elements
  along ``d`` (a softmax over classes couples the class dimension; a finite difference of the
  gradient shows it);
* otherwise the loss is elementwise along ``d``, and duplicating the outputs and the targets
  along ``d`` leaves a **mean** unchanged (``d`` is averaged over: units run along it) and
  doubles a **sum** (``d`` lies inside a unit);
* with integer (class-index) targets the class dimension is the one the targets lack; a
  duplication that gives neither ratio there (a causal shift inside the loss pairs the last
  position of one copy with the first target of the next) is a mean, as every class-index loss
  of torch averages over positions; with other targets it is ambiguous and refused, asking
  for ``count_units=``.

The batch dimension is averaged over (``check_mean_reduction`` refuses anything else) and may
not be coupled. ``n`` is the number of units whose loss depends on their output: units the loss
ignores (``ignore_index``, masks) do not count, units a hinge happens to satisfy here do
(:mod:`.flat` tells them apart, or refuses). The structure is found once per loss and output shape.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .errors import UnsupportedModelError
from .flat import flat_ops, probe_points
from .loss_tensors import LossShapeError, duplicate, evaluate, first, first_twice

LossFn = Callable[[Tensor, Tensor], Tensor]

#: Relative tolerance of the duplication ratio (1: a mean, 2: a sum), by the probe's precision.
RATIO_RTOL = {torch.float64: 1e-9, torch.float32: 1e-4}


@dataclass(frozen=True)
class Units:
    """The output dimensions inside a unit (the loss averages over all the others, the batch too),
    and the ops by which the loss can be flat in its outputs (:mod:`.flat`; none: smooth)."""

    inside: tuple[int, ...]
    flat: tuple[str, ...] = ()

    def live(self, grad: Tensor, finite: bool = False) -> Tensor:
        """Per unit, whether its gradient is not zero (a bool tensor: no host sync); with ``finite``,
        a non-finite gradient is no evidence either (at a probe point, where the loss need not be
        defined). At the outputs a NaN gradient counts: the record reports the NaN, not a zero count."""
        g = grad.ne(0) & torch.isfinite(grad) if finite else grad.ne(0)
        return g.any(dim=self.inside) if self.inside else g


_CACHE: "weakref.WeakKeyDictionary[object, dict]" = weakref.WeakKeyDictionary()


def loss_cache(loss_fn: LossFn, outputs: Tensor, targets: Tensor) -> tuple[dict, tuple]:
    """What is known of ``loss_fn`` (its structure, whether it is a mean), for this output and
    target shape: a dict kept as long as the loss lives (a fresh one for a loss that cannot be
    weakly referenced), and the key of this shape (the batch dimension left out)."""
    key = (tuple(outputs.shape[1:]), tuple(targets.shape[1:]), outputs.dtype, targets.dtype, str(outputs.device))
    try:
        return _CACHE.setdefault(loss_fn, {}), key
    except TypeError:
        return {}, key


#: Length of the block of draws that :func:`_point` tiles over the outputs (a prime). Drawing one
#: per element cost more than the loss's own gradient there: 53 of the 143 ms a count took on a
#: 32 x 1024 x 256 image-twin batch, on 2 CPU cores (``benchmarks/unit_count.py``).
NOISE_BLOCK = 4099


def _point(outputs: Tensor, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
    """Near the outputs (non-finite entries zeroed: a NaN output is reported by the record, not
    here), nudged so that no unit sits exactly at a zero gradient:
    ``x + 1e-4 (|x| + mean|x| + 1) z``, with ``|z| >= 1`` from a block of ``NOISE_BLOCK`` normal
    draws pushed away from 0 and repeated over the flattened outputs. Every element moves by at
    least 1e-4 of itself, far above float32's resolution of it (about 6e-8 of itself); a nudge
    scaled by the mean alone, with ``z`` near 0, left about 1 element in 6000 of a regression fit
    exactly at its zero gradient (tests/test_lnp_units.py)."""
    x = torch.nan_to_num(outputs.detach().to(dtype), nan=0.0, posinf=0.0, neginf=0.0)
    n = x.numel()
    z = torch.randn(min(n, NOISE_BLOCK), generator=generator, dtype=dtype, device="cpu")
    z = torch.where(z < 0, z - 1, z + 1).to(x.device)
    noise = z.repeat(-(-n // z.numel()))[:n].view(x.shape)
    size = x.abs()
    return x.add_(noise.mul_(size.add_(size.mean() + 1)).mul_(1e-4))


def _grad(loss_fn: LossFn, x: Tensor, targets: Tensor) -> tuple[float, Tensor]:
    loss, g = _loss_and_grad(loss_fn, x, targets)
    return float(loss), g


def _loss_and_grad(loss_fn: LossFn, x: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(x, targets)
        (g,) = torch.autograd.grad(loss, x)
    return loss.detach(), g


def _targets(targets: Tensor, dtype: torch.dtype) -> Tensor:
    return targets.to(dtype) if targets.is_floating_point() else targets


def _dtypes(outputs: Tensor) -> list[torch.dtype]:
    """float64 where the loss accepts it (a class-weight tensor of another dtype may not), else the outputs' own."""
    own = outputs.dtype if outputs.dtype in (torch.float32, torch.float64) else torch.float32
    return list(dict.fromkeys([torch.float64, own]))


def _coupled(loss_fn: LossFn, x: Tensor, targets: Tensor, g: Tensor) -> set[int]:
    """Dimensions along which one element's value moves other elements' gradients."""
    nonzero = g.ne(0).nonzero()
    if len(nonzero) == 0:
        return set()
    e0 = tuple(int(i) for i in nonzero[0])
    moved = x.clone()
    moved[e0] += 1e-3 * max(1.0, float(x[e0].abs()))
    diff = (_grad(loss_fn, moved, targets)[1] - g).abs()
    diff[e0] = 0
    changed = (diff > 1e-6 * float(diff.max())).nonzero() if float(diff.max()) > 0 else diff.new_zeros((0, x.dim()))
    return {d for idx in changed.tolist() for d in range(x.dim()) if idx[d] != e0[d]}


def _class_dim(outputs: Tensor, targets: Tensor, coupled: set[int]) -> int | None:
    """The output dimension that class-index targets lack, or ``None`` if it cannot be told."""
    fits = [
        d
        for d in range(1, outputs.dim())
        if tuple(outputs.shape[:d]) + tuple(outputs.shape[d + 1 :]) == tuple(targets.shape)
    ]
    if len(fits) > 1:
        fits = [d for d in fits if d in coupled]
    return fits[0] if len(fits) == 1 else None


def _refuse(loss_fn: LossFn, outputs: Tensor, targets: Tensor, why: str) -> UnsupportedModelError:
    name = getattr(loss_fn, "__qualname__", type(loss_fn).__name__)
    return UnsupportedModelError(
        f"loss units of {name} on outputs {tuple(outputs.shape)} and targets {tuple(targets.shape)} "
        f"({targets.dtype}): {why}. Pass count_units=lambda outputs, targets: <the number of terms the "
        "loss averages over> to measure()."
    )


def structure(loss_fn: LossFn, outputs: Tensor, targets: Tensor) -> Units:
    """Which output dimensions the mean ``loss_fn`` averages over (see the module docstring)."""
    cache, key = loss_cache(loss_fn, outputs, targets)
    key = ("units", *key)
    if key not in cache:
        *others, own = _dtypes(outputs)
        for dtype in others:
            try:
                cache[key] = _structure(loss_fn, outputs, targets, dtype)
                break
            except (RuntimeError, TypeError):  # the loss does not take this dtype
                continue
        else:
            try:
                cache[key] = _structure(loss_fn, outputs, targets, own)
            except LossShapeError as err:
                raise _refuse(
                    loss_fn,
                    outputs,
                    targets,
                    f"it fails on outputs duplicated along a dimension, even with its own tensors (weight, "
                    f"pos_weight, a captured variance) duplicated alike ({err})",
                ) from err
    return cache[key]


def _structure(loss_fn: LossFn, outputs: Tensor, targets: Tensor, dtype: torch.dtype) -> Units:
    t = _targets(targets, dtype)
    x = _point(outputs, torch.Generator().manual_seed(0), dtype)
    loss, g = _grad(loss_fn, x, t)
    flat = flat_ops(loss_fn, x, t)
    coupled = _coupled(loss_fn, x, t, g)
    if 0 in coupled:
        raise _refuse(
            loss_fn,
            outputs,
            targets,
            "the loss couples samples (its gradient for one sample moves with another's output)",
        )
    if targets.shape == outputs.shape:
        target_dim, inside = (lambda d: d), set(coupled)
    elif targets.dim() == outputs.dim() - 1 and not targets.is_floating_point():
        c = _class_dim(outputs, targets, coupled)
        if c is None:
            raise _refuse(
                loss_fn, outputs, targets, "no single output dimension is the class dimension the targets lack"
            )
        target_dim, inside = (lambda d: d if d < c else d - 1), set(coupled) | {c}
    elif outputs.dim() == 1 or all(d in coupled for d in range(1, outputs.dim())):
        target_dim, inside = (lambda d: None), set(coupled)
    else:
        raise _refuse(loss_fn, outputs, targets, "the targets' shape does not show which output dimension they follow")
    for d in range(1, outputs.dim()):
        if d in inside:
            continue
        twice = evaluate(loss_fn, x.detach(), t, d, target_dim(d), duplicate)
        ratio = float(twice) / loss if loss != 0 else float("nan")
        if abs(ratio - 2) <= 2 * RATIO_RTOL[dtype]:
            inside.add(d)  # a sum over d: d lies inside a unit
        elif abs(ratio - 1) > RATIO_RTOL[dtype] and targets.is_floating_point():
            raise _refuse(
                loss_fn,
                outputs,
                targets,
                f"along dimension {d} it is neither a mean nor a sum (duplicated, the loss changes by {ratio:.6g}x)",
            )
        # otherwise a mean over d (units run along it), or, with class-index targets, a causal shift
        # inside the loss, which averages over positions too (module docstring)
    return Units(tuple(sorted(inside)), flat)


def count_units_tensor(loss_fn: LossFn, outputs: Tensor, targets: Tensor) -> Tensor:
    """Loss units of a batch: units (:func:`structure`) whose loss depends on their output, as a
    0-dim tensor on the outputs' device. For a smooth loss these are the units whose gradient is
    not zero near ``outputs`` (no host sync once the structure is known); a loss that can be flat
    in its outputs is also probed elsewhere, and refused if a unit stays undecided (:mod:`.flat`:
    one host sync)."""
    units = structure(loss_fn, outputs, targets)
    dtype = outputs.dtype if outputs.dtype in (torch.float32, torch.float64) else torch.float32
    x, t = _point(outputs, torch.Generator().manual_seed(1), dtype), _targets(targets, dtype)
    live = units.live(_loss_and_grad(loss_fn, x, t)[1])
    if units.flat:
        for point in probe_points(x, units.inside, torch.Generator().manual_seed(2)):
            try:
                live |= units.live(_loss_and_grad(loss_fn, point, t)[1], finite=True)
            except Exception:  # the user's loss may not take every point (a log of a negative): no evidence
                continue
        undecided = int((~live).sum())
        if undecided:
            raise _refuse(
                loss_fn,
                outputs,
                targets,
                f"{undecided} of its {live.numel()} loss units have a zero gradient at the outputs and at every "
                f"other point tried, and the loss can be flat in its outputs ({', '.join(units.flat)}): whether "
                "they are ignored (a mask, ignore_index) or past a margin, which the mean still divides by, "
                "cannot be told",
            )
    return live.sum()


def count_loss_units(loss_fn: LossFn, outputs: Tensor, targets: Tensor) -> int:
    """Loss units of a batch (:func:`count_units_tensor`) as a number."""
    return int(count_units_tensor(loss_fn, outputs, targets))


def check_mean_reduction(loss_fn: LossFn, outputs: Tensor, targets: Tensor) -> None:
    """Refuse a loss that is not a mean over loss units (its value would change with batch size);
    once per loss, output and target shape (its comparison reads values: host syncs)."""
    cache, key = loss_cache(loss_fn, outputs, targets)
    key = ("mean", *key)
    if key not in cache:
        _check_mean(loss_fn, outputs, targets)
        cache[key] = True


def _check_mean(loss_fn: LossFn, outputs: Tensor, targets: Tensor) -> None:
    reduction = getattr(loss_fn, "reduction", "mean")
    if reduction not in ("mean", "batchmean"):
        raise ValueError(
            f"loss_fn has reduction={reduction!r}; LNP needs a mean over loss units "
            "(reduction='mean', or 'batchmean' for KLDivLoss), as the training step uses"
        )
    # in float64 where the loss takes it (else float32): bf16's own rounding (~4e-3) would hide the answer
    errors = []
    with torch.no_grad():  # on the first sample: a mean does not change when it is repeated
        for dtype in _dtypes(outputs):
            x, t = outputs.to(dtype), _targets(targets, dtype)
            try:
                once = evaluate(loss_fn, x, t, 0, 0, first)
                twice = evaluate(loss_fn, x, t, 0, 0, first_twice)
                break
            except LossShapeError as err:
                errors.append(err)
        else:
            raise UnsupportedModelError(
                f"loss_fn fails on one sample of the batch, even with its own tensors that follow the batch "
                f"(a per-sample weight or variance) cut alike ({errors[-1]}), so LNP cannot check that it is a "
                "mean. Make the loss's own tensors broadcast over the batch, or pass them with the targets."
            ) from errors[-1]
    if torch.isfinite(once) and not torch.allclose(twice, once, rtol=1e-3, atol=1e-6):
        raise ValueError(
            f"loss_fn is not a mean over loss units: repeating a sample changed the loss from "
            f"{once.item():.6g} to {twice.item():.6g}. Use a mean reduction (e.g. reduction='mean')."
        )

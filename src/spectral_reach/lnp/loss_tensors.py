"""A loss evaluated on reshaped outputs, with the tensors of its own reshaped alongside.

The loss-unit probes (:mod:`.units`) evaluate a loss on its outputs and targets cut to one
sample and duplicated along a dimension. A loss that holds a tensor of its own that follows the
outputs (``BCEWithLogitsLoss(pos_weight=w)`` with ``w`` of shape ``(C,)`` on outputs ``(b, C)``, a
per-element ``weight``, a variance captured by a closure or a ``functools.partial``) then no longer
fits them. :func:`evaluate` applies the same cut or duplication to those tensors, so that the
probed loss is the same loss of a reshaped batch:

    loss'(op(f), op(y)) with every own tensor w replaced by op(w) along the dimension of w that
    follows the probed output dimension (aligned from the right, as broadcasting does, or from
    the left, as a per-sample variance of one dimension fewer is)

It is tried only when the loss fails on the reshaped outputs as it is, so a loss whose tensor is
indexed rather than broadcast (``CrossEntropyLoss``'s class ``weight``) keeps its tensor whole.
"""

from __future__ import annotations

import copy
import functools
import types
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

LossFn = Callable[[Tensor, Tensor], Tensor]
#: ``op(tensor, dim)``: the cut or duplication applied along ``dim`` of a tensor
Reshape = Callable[[Tensor, int], Tensor]


class LossShapeError(RuntimeError):
    """The loss fails on the reshaped outputs, with its own tensors reshaped or not."""


def duplicate(t: Tensor, dim: int) -> Tensor:
    return torch.cat([t, t], dim)


def first(t: Tensor, dim: int) -> Tensor:
    return t.narrow(dim, 0, 1)


def first_twice(t: Tensor, dim: int) -> Tensor:
    return duplicate(first(t, dim), dim)


def _aligned(t: Tensor, shape: tuple[int, ...], dim: int, right: bool) -> int | None:
    """The dimension of ``t`` that follows output dimension ``dim`` of ``shape``, if any."""
    td = dim - (len(shape) - t.dim()) if right else dim
    if 0 <= td < t.dim() and t.shape[td] == shape[dim] and shape[dim] > 1:
        return td
    return None


def _reshaped(value: object, shape: tuple[int, ...], dim: int, op: Reshape, right: bool) -> tuple[object, bool]:
    """``value`` reshaped if it is a tensor that follows output ``dim``, or a loss module holding
    one (a closure over ``nn.BCELoss(weight=w)``); whether it changed."""
    if isinstance(value, Tensor) and not isinstance(value, nn.Parameter):
        td = _aligned(value, shape, dim, right)
        if td is not None:
            return op(value, td), True
    if isinstance(value, nn.Module):
        adapted = _with_own_tensors(value, shape, dim, op, right)
        if adapted is not None:
            return adapted, True
    return value, False


def _with_own_tensors(loss_fn: LossFn, shape: tuple[int, ...], dim: int, op: Reshape, right: bool) -> LossFn | None:
    """``loss_fn`` with its own tensors that follow output ``dim`` reshaped by ``op``; ``None`` if
    it holds none (a module's buffers and tensor attributes, a partial's arguments, a closure's cells)."""
    if isinstance(loss_fn, nn.Module):
        clone, changed = copy.copy(loss_fn), False
        clone._buffers = dict(loss_fn._buffers)
        for name, value in {**loss_fn._buffers, **vars(loss_fn)}.items():
            new, hit = _reshaped(value, shape, dim, op, right)
            if hit:
                setattr(clone, name, new)
                changed = True
        return clone if changed else None
    if isinstance(loss_fn, functools.partial):
        args = [_reshaped(a, shape, dim, op, right) for a in loss_fn.args]
        kwargs = {k: _reshaped(v, shape, dim, op, right) for k, v in loss_fn.keywords.items()}
        if not any(hit for _, hit in args) and not any(hit for _, hit in kwargs.values()):
            return None
        return functools.partial(loss_fn.func, *(a for a, _ in args), **{k: v for k, (v, _) in kwargs.items()})
    if isinstance(loss_fn, types.FunctionType) and loss_fn.__closure__:
        try:
            cells = [_reshaped(c.cell_contents, shape, dim, op, right) for c in loss_fn.__closure__]
        except ValueError:  # an empty cell
            return None
        if not any(hit for _, hit in cells):
            return None
        closure = tuple(types.CellType(v) for v, _ in cells)
        return types.FunctionType(
            loss_fn.__code__, loss_fn.__globals__, loss_fn.__name__, loss_fn.__defaults__, closure
        )
    return None


def _candidates(loss_fn: LossFn, shape: tuple[int, ...], dim: int, op: Reshape) -> Iterator[LossFn]:
    for right in (True, False):
        adapted = _with_own_tensors(loss_fn, shape, dim, op, right)
        if adapted is not None:
            yield adapted


def evaluate(loss_fn: LossFn, x: Tensor, targets: Tensor, dim: int, target_dim: int | None, op: Reshape) -> Tensor:
    """``loss_fn(op(x, dim), op(targets, target_dim))`` (targets whole if ``target_dim`` is ``None``),
    with the loss's own tensors that follow ``dim`` reshaped alike where it fails without.

    Raises :class:`LossShapeError` naming the first failure if no form of the loss evaluates."""
    xs = op(x, dim)
    ts = targets if target_dim is None else op(targets, target_dim)
    try:
        return loss_fn(xs, ts)
    except Exception as err:  # whatever the user's loss raises on a reshaped batch
        first_error = err
    for adapted in _candidates(loss_fn, tuple(x.shape), dim, op):
        try:
            return adapted(xs, ts)
        except Exception:
            continue
    raise LossShapeError(f"{type(first_error).__name__}: {first_error}") from first_error

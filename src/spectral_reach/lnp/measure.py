"""The LNP decomposition of one training step, from gradient norms and one dot product.

With ``B`` the training batch and ``B'`` the measurement batch (``B' = B``: the self variant),
``g_i = dL/df_i`` the output gradient (it carries the ``1/n`` of the mean loss) and
``J_i = df_i/dtheta`` the per-sample Jacobian:

    delta        = < grad L_B , grad L_B' >
    chi_loss_raw = ||g_B|| ||g_B'||,          ||g_B||^2   = sum_{i in B} ||g_i||^2
    chi_net_raw  = ||J_B||_F ||J_B'||_F,      ||J_B||_F^2 = sum_{i in B} ||J_i||_F^2
    chi_pos      = delta / (chi_loss_raw * chi_net_raw)

and the batch-size-free components (paper App. A.2), with ``n`` the number of loss units:

    chi_loss = sqrt( n_B ||g_B||^2  *  n_B' ||g_B'||^2 )
    chi_net  = sqrt( ||J_B||_F^2 / n_B  *  ||J_B'||_F^2 / n_B' )

``chi_loss * chi_net = chi_loss_raw * chi_net_raw``, so ``chi_pos`` is the same in both.
Split over parameter groups (``groups=``, :mod:`.split`) each group gets its own ``delta_G``,
``chi_net_G`` and ``chi_pos_G``; given the update ``u`` an optimizer applied (``update=``),
``delta_update = < grad L_B' , u >`` is the first-order loss change on ``B'`` of that update per
unit learning rate, beside plain gradient descent's ``delta`` (``u = grad L_B``).
No kernel is formed: ``||J_i||_F^2`` comes from per-sample norms of K backward passes of
``sum_i v_i . f_i`` that share one forward pass (:mod:`.persample`, :mod:`.hutchinson`).
The layer that produces the output itself (an LM head) has a closed-form ``||J_i||_F^2``;
with Hutchinson probes it is counted exactly and the probes estimate the rest, which keeps
the estimate unbiased, lowers its variance, and skips the costliest per-probe norm.

Here: :func:`measure`, its arguments and :class:`LogitsOnly`; each batch's sums in
:mod:`.sides` (global under ``torch.distributed``: :mod:`.distributed`), the record they make in
:mod:`.record`.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from . import distributed, split
from .persample import PerSampleNorms
from .record import LNPRecord, record
from .rules import NormRule
from .sides import Batch, LossFn, measure_side, read

#: Seed of the generator used when the caller passes none (documented in :func:`measure`).
DEFAULT_SEED = 0


def _dot(a: Sequence[Tensor], b: Sequence[Tensor]) -> Tensor:
    return sum((x.to(torch.float64) * y.to(torch.float64)).sum() for x, y in zip(a, b))


def _check_update(update: Sequence[Tensor], params: list[nn.Parameter]) -> None:
    shapes = [tuple(p.shape) for p in params]
    if [tuple(u.shape) for u in update] != shapes:
        raise ValueError(
            "update must hold one tensor per trainable parameter, in model.parameters() order (the "
            f"parameter change of the step over its learning rate): got {len(update)} tensors for "
            f"{len(shapes)} parameters or shapes differ"
        )


def _check_arguments(
    model: nn.Module, hutchinson: int | None, train_grad: Sequence[Tensor] | None
) -> list[nn.Parameter]:
    """The trainable parameters, after refusing arguments that cannot be measured."""
    if hutchinson is not None and (isinstance(hutchinson, bool) or not isinstance(hutchinson, int) or hutchinson < 1):
        raise ValueError(f"hutchinson must be a positive int (K probe vectors) or None (exact), not {hutchinson!r}")
    if not torch.is_grad_enabled() or torch.is_inference_mode_enabled():
        raise RuntimeError(
            "measure() needs autograd, but it runs under torch.no_grad() or inference_mode(); "
            "call it outside that block (it changes no parameter and no .grad)"
        )
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameter; LNP measures a gradient step")
    if train_grad is not None:
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        missing = next((i for i, g in enumerate(train_grad) if g is None), None)
        if missing is not None:
            raise ValueError(
                f"train_grad[{missing}] is None (parameter '{names[missing] if missing < len(names) else '?'}'): "
                "call loss.backward() before measure(), and pass the gradients of the trainable parameters "
                "only, in order: [p.grad for p in model.parameters() if p.requires_grad]"
            )
        shapes = [tuple(p.shape) for p in params]
        if [tuple(g.shape) for g in train_grad] != shapes:
            raise ValueError(
                "train_grad must hold one gradient per trainable parameter, in model.parameters() "
                f"order: got {len(train_grad)} tensors for {len(shapes)} parameters or shapes differ"
            )
        wrong = next((i for i, (g, p) in enumerate(zip(train_grad, params)) if g.device != p.device), None)
        if wrong is not None:
            raise ValueError(
                f"train_grad[{wrong}] is on {train_grad[wrong].device}, its parameter on "
                f"{params[wrong].device}: pass the gradients where the model is"
            )
    return params


def measure(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    measure_batch: Batch | None = None,
    *,
    hutchinson: int | None = 4,
    train_grad: Sequence[Tensor] | None = None,
    generator: torch.Generator | None = None,
    count_units: Callable[[Tensor, Tensor], int] | None = None,
    rules: Mapping[type, NormRule] | None = None,
    allow_random: bool = False,
    groups: Mapping[str, Sequence[str]] | str | None = None,
    update: Sequence[Tensor] | None = None,
) -> LNPRecord:
    """LNP decomposition of a gradient step on ``batch`` evaluated on ``measure_batch``.

    Args:
        model: ``model(inputs)`` returns the output tensor, ``(b, C)`` or ``(b, T, V)``; a dict
            ``inputs`` is passed as keyword arguments, ``model(**inputs)``.
            Every parameter with ``requires_grad`` counts (freeze a backbone to probe).
        loss_fn: ``loss_fn(outputs, targets)``, a mean over loss units.
        batch: ``(inputs, targets)`` of the training batch ``B``.
        measure_batch: ``(inputs, targets)`` of ``B'``; ``None`` for the self variant ``B' = B``.
        hutchinson: K Rademacher vectors per batch, or ``None`` for the exact sum over all
            output coordinates (one backward pass each; for small outputs).
        train_grad: ``grad L_B`` that the training step already computed, one tensor per
            trainable parameter in ``model.parameters()`` order (unscaled, unclipped); saves
            one backward pass on ``B``.
        generator: source of the Rademacher vectors (never the global RNG); draw it on the
            output's device. Without one, a generator seeded with ``DEFAULT_SEED`` is made on
            each call, so repeated calls reuse the same vectors.
        count_units: ``count_units(outputs, targets) -> n`` overrides :func:`count_loss_units`.
        rules: per-sample norm rules by module type, overriding :data:`.rules.RULES`.
        allow_random: measure although the forward pass applies dropout (the components are
            then random); by default active dropout is refused: measure in eval mode.
        groups: split the measurement over parameter groups, ``{name: [parameter names]}``
            (``model.named_parameters()`` names; parameters in no group form ``"other"``), or
            ``"default"`` for :func:`.split.default_groups` (embedding, each block's attention
            and MLP, norms, head). The record's ``groups`` then holds each group's
            ``delta``, ``j_sq``, ``chi_net`` and ``chi_pos``; deltas and ``j_sq`` sum to the whole.
        update: the step an optimizer took, ``(theta_before - theta_after) / lr`` per trainable
            parameter in ``model.parameters()`` order (weight decay included); gives
            ``delta_update = < grad L_B', update >`` (equal to ``delta`` for plain SGD).

    Every trainable parameter counts however the model uses it, exactly (:mod:`.persample`);
    what cannot be measured exactly is refused, naming the module. The model's parameters,
    ``.grad``, mode and hooks are left as they were; non-finite values are reported, not raised.
    Under DDP or FSDP2 each rank passes its shard of the batches and gets the global batches'
    record (:mod:`.distributed`); ``train_grad`` may then be FSDP2's sharded gradients.
    """
    model = _unwrapped(model)
    with distributed.unsharded(model):  # FSDP2: every parameter gathered, as in a forward pass
        train_grad = None if train_grad is None else [distributed.full(g) for g in train_grad]
        update = None if update is None else [distributed.full(u) for u in update]
        return _measure(model, loss_fn, batch, measure_batch, hutchinson, train_grad, generator, count_units, rules,
                        allow_random, groups, update)  # fmt: skip


def _measure(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    measure_batch: Batch | None,
    hutchinson: int | None,
    train_grad: list[Tensor] | None,
    generator: torch.Generator | None,
    count_units: Callable[[Tensor, Tensor], int] | None,
    rules: Mapping[type, NormRule] | None,
    allow_random: bool,
    groups: Mapping[str, Sequence[str]] | str | None,
    update: list[Tensor] | None,
) -> LNPRecord:
    params = _check_arguments(model, hutchinson, train_grad)
    if update is not None:
        _check_update(update, params)
    if generator is None:
        generator = torch.Generator(device=params[0].device).manual_seed(DEFAULT_SEED)
    if groups == "default":
        groups = split.default_groups(model)
    names, columns = (None, None) if groups is None else split.resolve(model, groups)
    cross = measure_batch is not None
    with PerSampleNorms(model, rules or {}, allow_random, columns) as norms:
        side_of = functools.partial(
            measure_side, model, loss_fn, norms=norms, params=params, hutchinson=hutchinson, generator=generator,
            count_units=count_units,
        )  # fmt: skip
        side = side_of(batch, need_grad=train_grad is None)
        other = side_of(measure_batch, need_grad=True) if cross else side
        grad_b = train_grad if train_grad is not None else side.grad
        grad_m = other.grad if cross else grad_b
        dots = [_dot(grad_b, grad_m)] + ([] if update is None else [_dot(grad_m, update)])
        for k in range(len(names or ())):  # each group's delta_G: its parameters' terms of the dot product
            mine = [i for i, p in enumerate(params) if columns[id(p)] == k]
            dots.append(_dot([grad_b[i] for i in mine], [grad_m[i] for i in mine]))
    sums, values = read([side, other] if cross else [side], torch.stack(dots))
    delta, delta_update = values[0], (values[1] if update is not None else math.nan)
    return record(sums[0], sums[-1], delta, hutchinson, cross, delta_update, names, values[1 + (update is not None) :])


def _unwrapped(model: nn.Module) -> nn.Module:
    """The model DDP wraps (:func:`.distributed.unwrap`); a ``LogitsOnly`` around DDP becomes a fresh
    wrapper of the inner module, so the caller's wrapper keeps wrapping what it wrapped."""
    if not isinstance(model, LogitsOnly):
        return distributed.unwrap(model)
    inner = distributed.unwrap(model.model)
    return model if inner is model.model else LogitsOnly(inner)


class LogitsOnly(nn.Module):
    """Wrap a Hugging Face model so that ``module(inputs)`` returns ``.logits``.

    ``inputs`` is a tensor (``input_ids`` or ``pixel_values``) passed positionally, or keyword
    arguments (``measure`` passes a dict batch's entries as keywords: ``input_ids``,
    ``attention_mask``, ...).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @property
    def cache_owner(self) -> nn.Module:
        """The wrapped model, on which the per-sample machinery keys its per-model checks: a
        wrapper made afresh at each step verifies its plan once, as the model itself would."""
        return self.model

    def forward(self, inputs: Tensor | None = None, **kwargs: Tensor) -> Tensor:
        return (self.model(**kwargs) if inputs is None else self.model(inputs, **kwargs)).logits

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
No kernel is formed: ``||J_i||_F^2`` comes from per-sample norms of K backward passes of
``sum_i v_i . f_i`` that share one forward pass (:mod:`.persample`, :mod:`.hutchinson`).
The layer that produces the output itself (an LM head) has a closed-form ``||J_i||_F^2``;
with Hutchinson probes it is counted exactly and the probes estimate the rest, which keeps
the estimate unbiased, lowers its variance, and skips the costliest per-probe norm.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from . import distributed
from .capture import RandomForwardError
from .errors import UnsupportedModelError
from .hutchinson import probe_count, probe_vectors
from .loss_tensors import LossShapeError, evaluate, first, first_twice
from .persample import PerSampleNorms, RecordAgain
from .rules import NormRule
from .units import count_units_tensor, loss_cache

LossFn = Callable[[Tensor, Tensor], Tensor]
Batch = tuple[Tensor, Tensor]

#: Seed of the generator used when the caller passes none (documented in :func:`measure`).
DEFAULT_SEED = 0


@dataclass(frozen=True)
class LNPRecord:
    """One LNP measurement. Scalars are Python floats; ``*_measure`` refer to ``B'``."""

    delta: float
    chi_loss: float
    chi_net: float
    chi_pos: float
    chi_loss_raw: float
    chi_net_raw: float
    loss: float
    loss_measure: float
    g_sq: float
    g_sq_measure: float
    j_sq: float
    j_sq_measure: float
    n_units: int
    n_units_measure: int
    batch_size: int
    batch_size_measure: int
    hutchinson: int
    variant: str
    j_sq_draws: tuple[float, ...]
    j_sq_draws_measure: tuple[float, ...]

    def as_row(self) -> dict[str, float | int | str]:
        """The scalar fields, for one row of a tidy table."""
        row = asdict(self)
        del row["j_sq_draws"], row["j_sq_draws_measure"]
        return row

    @property
    def finite(self) -> bool:
        return all(math.isfinite(v) for v in (self.delta, self.chi_loss, self.chi_net, self.chi_pos))


@dataclass
class _Side:
    """One batch's sums, kept on the device until :func:`_read` (one host transfer per measurement)."""

    loss: Tensor
    g_sq: Tensor
    draws: Tensor  # (K,) float64: ||J_B||_F^2 per probe vector, or every basis vector's term
    n_units: Tensor
    batch_size: int
    grad: list[Tensor] | None
    exact: bool  # draws are the terms of the exact sum (hutchinson=None), not estimates


@dataclass
class _Read:
    """A side's sums as Python numbers."""

    loss: float
    g_sq: float
    j_sq: float
    j_draws: tuple[float, ...]
    n_units: int
    batch_size: int


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
    with torch.no_grad():  # on the first sample: a mean does not change when it is repeated
        try:
            once = evaluate(loss_fn, outputs, targets, 0, 0, first)
            twice = evaluate(loss_fn, outputs, targets, 0, 0, first_twice)
        except LossShapeError as err:
            raise UnsupportedModelError(
                f"loss_fn fails on one sample of the batch, even with its own tensors that follow the batch "
                f"(a per-sample weight or variance) cut alike ({err}), so LNP cannot check that it is a mean. "
                "Make the loss's own tensors broadcast over the batch, or pass them with the targets."
            ) from err
    if torch.isfinite(once) and not torch.allclose(twice, once, rtol=1e-3, atol=1e-6):
        raise ValueError(
            f"loss_fn is not a mean over loss units: repeating a sample changed the loss from "
            f"{once.item():.6g} to {twice.item():.6g}. Use a mean reduction (e.g. reduction='mean')."
        )


def _batch_size(inputs: object, targets: Tensor) -> int:
    """From the inputs (a tensor, or the first tensor of a dict of keyword arguments), else the targets."""
    if isinstance(inputs, Mapping):
        inputs = next((v for v in inputs.values() if isinstance(v, Tensor)), None)
    b = inputs.shape[0] if isinstance(inputs, Tensor) and inputs.dim() > 0 else targets.shape[0]
    if b == 0:
        raise ValueError("the batch is empty: LNP needs at least one sample")
    return b


def _generator_states(device: torch.device) -> list[bytes]:
    """The default generators' states (CPU, and the device's CUDA one), as bytes: host memory, no sync."""
    states = [torch.random.get_rng_state()]
    if device.type == "cuda":
        states.append(torch.cuda.get_rng_state(device))
    return [state.numpy().tobytes() for state in states]


def _recorded_forward(model: nn.Module, inputs: object, norms: PerSampleNorms, b: int, allow_random: bool) -> Tensor:
    """``model(inputs)`` recorded by ``norms`` and planned; recorded again if an op changed a
    captured output in place (that module's output is copied from then on). A forward pass that
    moved a default generator drew random numbers: refused unless ``allow_random`` (the function
    mode names the module for torch's random ops; this catches draws inside other kernels)."""
    device = next(iter(norms.model.parameters())).device
    for _ in range(len(norms.owning) + 1):
        before = _generator_states(device)
        with norms.forward(b, inputs):
            outputs = model(**inputs) if isinstance(inputs, Mapping) else model(inputs)
        if not allow_random and before != _generator_states(device):
            raise RandomForwardError(
                "the forward pass drew random numbers (a default generator moved), so the measurement would "
                "be random. Measure in eval mode (model.eval() around measure()) or pass allow_random=True."
            )
        if not isinstance(outputs, Tensor):
            raise TypeError(
                f"model(inputs) must return the output tensor, not {type(outputs).__name__}; wrap "
                "a Hugging Face model in spectral_reach.lnp.LogitsOnly"
            )
        if outputs.dim() == 0 or outputs.shape[0] != b:
            raise ValueError(
                f"model(inputs) returned shape {tuple(outputs.shape)}; LNP needs the batch ({b}) "
                "on dimension 0 of the output"
            )
        try:
            norms.plan(outputs)
            return outputs
        except RecordAgain:
            continue
    raise AssertionError("unreachable: each new forward pass copies one more module output")


def _measure_side(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    norms: PerSampleNorms,
    params: list[nn.Parameter],
    hutchinson: int | None,
    generator: torch.Generator,
    need_grad: bool,
    count_units: Callable[[Tensor, Tensor], int] | None,
) -> _Side:
    inputs, targets = batch
    b = _batch_size(inputs, targets)
    outputs = _recorded_forward(model, inputs, norms, b, norms.allow_random)
    loss = loss_fn(outputs, targets)
    check_mean_reduction(loss_fn, outputs.detach(), targets)
    if count_units:
        n_units = torch.tensor(count_units(outputs, targets))
    else:
        n_units = count_units_tensor(loss_fn, outputs.detach(), targets)
    wrt = [outputs] + (params if need_grad else [])
    g_out, *grad = torch.autograd.grad(loss, wrt, retain_graph=True, allow_unused=True)
    g_sq = g_out.detach().pow(2).sum(dtype=torch.float64)
    if need_grad:
        grad = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grad)]
    part = distributed.shard(b, n_units) if distributed.active() else None
    rows = None if part is None else (part.offset, part.total)
    norms.passes = probe_count(outputs.shape, hutchinson)
    # after `passes`: the check prepares the rules' caches, whose form depends on it
    norms.verify(outputs, torch.Generator(device=outputs.device).manual_seed(DEFAULT_SEED))
    exact = norms.exact_output_sq_norms(outputs) if hutchinson is not None else None
    exact_sum = 0.0 if exact is None else exact.sum()
    draws = torch.stack(
        [
            exact_sum + norms.jvp_sq_norms(outputs, v).sum()
            for v in probe_vectors(outputs.shape, hutchinson, generator, outputs.dtype, outputs.device, rows)
        ]
    )
    side = _Side(loss.detach(), g_sq, draws, n_units, b, grad if need_grad else None, hutchinson is None)
    return side if part is None else _global(side, part)


def _global(side: _Side, part: distributed.Shard) -> _Side:
    """A rank's side made the global batch's (:mod:`.distributed`): one collective for the sums,
    one for the gradient."""
    w = part.weight
    sums = distributed.all_sum(
        torch.cat([torch.stack([side.loss.to(torch.float64) * w, side.g_sq * w * w]), side.draws.to(torch.float64)])
    )
    grad = None if side.grad is None else distributed.weighted_grad(side.grad, w)
    units = torch.tensor(part.units, device=side.n_units.device)
    return _Side(sums[0], sums[1], sums[2:], units, part.total, grad, side.exact)


def _read(sides: list[_Side], delta: Tensor) -> tuple[list[_Read], float]:
    """Every sum of the measurement as Python numbers, in one host transfer."""
    device = delta.device
    parts = [delta.reshape(1).to(torch.float64)]
    for side in sides:
        scalars = [side.loss.to(torch.float64), side.g_sq, side.n_units.to(device=device, dtype=torch.float64)]
        parts += [torch.stack([x.to(device) for x in scalars]), side.draws.to(device)]
    values = torch.cat(parts).tolist()
    delta_value, k, read = values[0], 1, []
    for side in sides:
        loss, g_sq, n_units = values[k : k + 3]
        draws = tuple(values[k + 3 : k + 3 + len(side.draws)])
        k += 3 + len(side.draws)
        if n_units <= 0:
            raise ValueError("every target of the batch is ignored by the loss (no loss unit): nothing to measure")
        j_sq = sum(draws) if side.exact else sum(draws) / len(draws)
        read.append(_Read(loss, g_sq, j_sq, draws, int(n_units), side.batch_size))
    return read, delta_value


def _dot(a: Sequence[Tensor], b: Sequence[Tensor]) -> Tensor:
    return sum((x.to(torch.float64) * y.to(torch.float64)).sum() for x, y in zip(a, b))


def _ratio(num: float, den: float) -> float:
    return num / den if den != 0 else math.nan


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

    Every trainable parameter counts however the model uses it: tied or shared parameters,
    functional reuse (``F.linear(x, m.weight)``) and tables broadcast over the batch are exact
    (:mod:`.persample`); what cannot be measured exactly is refused, naming the module.
    The model's parameters, ``.grad``, train/eval mode and hooks are left as they were.
    Non-finite values (a NaN loss, say) are reported in the record, not raised.
    """
    train_grad = None if train_grad is None else list(train_grad)
    if isinstance(model, LogitsOnly):  # a fresh wrapper: the caller's keeps wrapping what it wrapped
        inner = distributed.unwrap(model.model)
        model = model if inner is model.model else LogitsOnly(inner)
    else:
        model = distributed.unwrap(model)
    params = _check_arguments(model, hutchinson, train_grad)
    if generator is None:
        device = next(iter(params)).device
        generator = torch.Generator(device=device).manual_seed(DEFAULT_SEED)
    cross = measure_batch is not None
    with PerSampleNorms(model, rules or {}, allow_random) as norms:

        def side_of(b: Batch, need_grad: bool) -> _Side:
            return _measure_side(
                model, loss_fn, b, norms, params, hutchinson, generator, need_grad=need_grad, count_units=count_units
            )

        side = side_of(batch, need_grad=train_grad is None)
        other = side_of(measure_batch, need_grad=True) if cross else side
        grad_b = train_grad if train_grad is not None else side.grad
        delta = _dot(grad_b, other.grad if cross else grad_b)
    read, delta_value = _read([side, other] if cross else [side], delta)
    return _record(read[0], read[-1], delta_value, hutchinson, cross)


def _record(side: _Read, other: _Read, delta: float, hutchinson: int | None, cross: bool) -> LNPRecord:
    """The record from the two sides' sums (the module docstring's formulas): with ``g_sq`` =
    ``||g_B||^2`` and ``j_sq`` = ``||J_B||_F^2``, ``chi_loss = sqrt(n g_sq n' g_sq')``,
    ``chi_net = sqrt(j_sq / n * j_sq' / n')``, ``chi_pos = delta / sqrt(g_sq g_sq' j_sq j_sq')``."""
    chi_loss_raw = math.sqrt(side.g_sq * other.g_sq)
    chi_net_raw = math.sqrt(side.j_sq * other.j_sq)
    return LNPRecord(
        delta=delta,
        chi_loss=math.sqrt(side.n_units * side.g_sq * other.n_units * other.g_sq),
        chi_net=math.sqrt(_ratio(side.j_sq, side.n_units) * _ratio(other.j_sq, other.n_units)),
        chi_pos=_ratio(delta, chi_loss_raw * chi_net_raw),
        chi_loss_raw=chi_loss_raw,
        chi_net_raw=chi_net_raw,
        loss=side.loss,
        loss_measure=other.loss,
        g_sq=side.g_sq,
        g_sq_measure=other.g_sq,
        j_sq=side.j_sq,
        j_sq_measure=other.j_sq,
        n_units=side.n_units,
        n_units_measure=other.n_units,
        batch_size=side.batch_size,
        batch_size_measure=other.batch_size,
        hutchinson=0 if hutchinson is None else hutchinson,
        variant="cross" if cross else "self",
        j_sq_draws=side.j_draws,
        j_sq_draws_measure=other.j_draws,
    )


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

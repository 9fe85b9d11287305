"""One side of a measurement (the batch ``B`` or ``B'``): its sums, kept on the device.

For a batch: the recorded forward pass (planned by :mod:`.persample`), the loss and its loss
units (:mod:`.units`), ``||g||^2`` of the output gradient, ``||J||_F^2`` per probe vector (or per
output coordinate for the exact sum) and, where needed, the parameter gradient; under
``torch.distributed`` the global batch's (:mod:`.distributed`). :func:`read` brings every sum of a
measurement to the host in one transfer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch import Tensor, nn

from . import distributed
from .capture import RandomForwardError
from .hutchinson import probe_count, probe_vectors
from .persample import PerSampleNorms, RecordAgain
from .record import SideSums
from .units import check_mean_reduction, count_units_tensor

LossFn = Callable[[Tensor, Tensor], Tensor]
Batch = tuple[Tensor, Tensor]

#: Seed of the generator that checks a plan (sample 0's probe), whatever the caller's generator.
CHECK_SEED = 0


@dataclass
class Side:
    """One batch's sums, kept on the device until :func:`read` (one host transfer per measurement)."""

    loss: Tensor
    g_sq: Tensor
    draws: Tensor  # (K, groups) float64: ||J_B||_F^2 per probe vector, or every basis vector's term
    n_units: Tensor
    batch_size: int
    grad: list[Tensor] | None
    exact: bool  # draws are the terms of the exact sum (hutchinson=None), not estimates


def batch_size(inputs: object, targets: Tensor) -> int:
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


def recorded_forward(model: nn.Module, inputs: object, norms: PerSampleNorms, b: int, allow_random: bool) -> Tensor:
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


def measure_side(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    norms: PerSampleNorms,
    params: list[nn.Parameter],
    hutchinson: int | None,
    generator: torch.Generator,
    need_grad: bool,
    count_units: Callable[[Tensor, Tensor], int] | None,
) -> Side:
    inputs, targets = batch
    b = batch_size(inputs, targets)
    outputs = recorded_forward(model, inputs, norms, b, norms.allow_random)
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
    norms.verify(outputs, torch.Generator(device=outputs.device).manual_seed(CHECK_SEED))
    exact = norms.exact_output_sq_norms(outputs) if hutchinson is not None else None
    exact_sum = 0.0 if exact is None else exact.sum(0)
    draws = torch.stack(
        [
            exact_sum + norms.jvp_sq_norms(outputs, v).sum(0)
            for v in probe_vectors(outputs.shape, hutchinson, generator, outputs.dtype, outputs.device, rows)
        ]
    )
    side = Side(loss.detach(), g_sq, draws, n_units, b, grad if need_grad else None, hutchinson is None)
    return side if part is None else _global(side, part)


def _global(side: Side, part: distributed.Shard) -> Side:
    """A rank's side made the global batch's (:mod:`.distributed`): one collective for the sums,
    one for the gradient."""
    loss, g_sq, draws, grad = distributed.global_sums(side.loss, side.g_sq, side.draws, side.grad, part)
    units = torch.tensor(part.units, device=side.n_units.device)
    return Side(loss, g_sq, draws, units, part.total, grad, side.exact)


def read(sides: list[Side], dots: Tensor) -> tuple[list[SideSums], list[float]]:
    """Every sum of the measurement, and the gradient dot products ``dots``, as Python numbers,
    in one host transfer."""
    device = dots.device
    parts = [dots.reshape(-1).to(torch.float64)]
    for side in sides:
        scalars = [side.loss.to(torch.float64), side.g_sq, side.n_units.to(device=device, dtype=torch.float64)]
        parts += [torch.stack([x.to(device) for x in scalars]), side.draws.to(device).reshape(-1)]
    values = torch.cat(parts).tolist()
    k, read = len(dots), []
    for side in sides:
        loss, g_sq, n_units = values[k : k + 3]
        count, width = side.draws.shape
        flat = values[k + 3 : k + 3 + count * width]
        k += 3 + count * width
        if n_units <= 0:
            raise ValueError("every target of the batch is ignored by the loss (no loss unit): nothing to measure")
        per_group = [flat[c::width] for c in range(width)]  # each group's terms, draw by draw
        draws = tuple(sum(flat[d * width : (d + 1) * width]) for d in range(count))
        j_sq = sum(draws) if side.exact else sum(draws) / count
        groups = tuple(sum(terms) if side.exact else sum(terms) / count for terms in per_group)
        read.append(SideSums(loss, g_sq, j_sq, draws, int(n_units), side.batch_size, groups))
    return read, values[: len(dots)]

"""The measurement of a data-parallel step: the components of the *global* batch under
``torch.distributed`` (DistributedDataParallel, each rank holding a shard of ``B`` and of ``B'``).

With ``n_r`` the loss units of rank ``r`` and ``N = sum_r n_r``, the global loss is the mean over
all ``N`` units, so a rank's output gradient ``g_i`` (of its local mean) is ``n_r / N`` of the
global one, and

    ||g_B||^2   = sum_r (n_r / N)^2 ||g_B,r||^2        ||J_B||_F^2 = sum_r ||J_B,r||_F^2
    grad L_B'   = sum_r (n_r / N) grad L_B',r           loss = sum_r (n_r / N) loss_r

Per side, three collectives, whatever K: one ``all_gather`` of the shard sizes (for ``N`` and the
shard's first global sample), one ``all_reduce`` of every sum (the loss, ``||g||^2``, each probe's
``||J||_F^2``), one ``all_reduce`` of the weighted gradient (one flattened buffer). A Hutchinson
vector is drawn for the whole global batch on every rank from the same generator and each rank
takes its shard's rows, so every sample meets the vector it would meet in one process: the result
does not depend on the number of ranks. ``train_grad`` must be the global gradient (DDP's averaged
gradient is, when the ranks hold equal loss units). Every rank gets the same record.

Under FSDP2 (``fully_shard``, per parameter and nested) :func:`unsharded` gathers every FSDP
module's parameters for the measurement, as a forward pass does, and keeps them gathered through
its backward passes (``reshard_after_forward`` and ``reshard_after_backward`` off meanwhile, then
restored and resharded); the step's sharded gradients are gathered whole (:func:`full`), and the
rest is the data-parallel measurement above. So the whole model's weights sit on each rank during a
measurement: a model whose weights alone exceed one device is not measured yet. FSDP1
(``FullyShardedDataParallel``, flat parameters) is refused.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .errors import UnsupportedModelError


@dataclass(frozen=True)
class Shard:
    """This rank's part of a global batch."""

    offset: int  # global index of its first sample
    total: int  # samples in the global batch
    weight: float  # n_r / N: its share of the global loss units
    units: int  # N


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def unwrap(model: nn.Module) -> nn.Module:
    """The module that DDP wraps or ``torch.compile`` compiled (its ``_orig_mod``: the measurement's
    hooks would make dynamo retrace it at every call), however nested; ``measure`` unwraps the
    inside of a ``LogitsOnly`` with it too, in a fresh wrapper. FSDP1 refused (FSDP2: :func:`unsharded`)."""
    from torch.nn.parallel import DistributedDataParallel

    for name, module in model.named_modules():
        if type(module).__name__.startswith("FullyShardedDataParallel"):
            raise UnsupportedModelError(
                f"module '{name or '<root>'}' is sharded by FSDP1 (FullyShardedDataParallel): its flat parameters "
                "hide the model's own. Shard it with FSDP2 (torch.distributed.fsdp.fully_shard), measure under "
                "DistributedDataParallel, or an unsharded copy."
            )
    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif type(model).__name__ == "OptimizedModule" and isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def _fsdp2_modules(model: nn.Module) -> list[nn.Module]:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # a torch without FSDP2
        return []
    return [m for m in model.modules() if isinstance(m, FSDPModule)]


@contextmanager
def unsharded(model: nn.Module) -> Iterator[None]:
    """Every FSDP2 module of ``model`` with its parameters gathered (plain parameters, as inside a
    forward pass) until the block ends, through any forward and backward passes in it; then its
    reshard settings restored and its parameters sharded again. Nothing for a model without FSDP2.

    Reads and restores FSDP2's per-group reshard settings (``post_forward_mesh_info``,
    ``reshard_after_backward``), which its public setters can set but not read."""
    modules = _fsdp2_modules(model)
    saved = [
        (state, state._auto_reshard_after_forward, [(g, g.post_forward_mesh_info, g.reshard_after_backward)
                                                   for g in state._fsdp_param_groups])
        for state in (m._get_fsdp_state() for m in modules)
    ]  # fmt: skip
    try:
        for m in modules:
            m.set_reshard_after_forward(False, recurse=False)
            m.set_reshard_after_backward(False, recurse=False)
            m.unshard()
        yield
    finally:
        for state, auto, groups in saved:
            state._auto_reshard_after_forward = auto
            for g, forward, backward in groups:
                g.post_forward_mesh_info, g.reshard_after_backward = forward, backward
        for m in modules:
            m.reshard()


def full(grad: Tensor) -> Tensor:
    """A gradient whole: FSDP2's sharded ``DTensor`` gathered, any other tensor as it is."""
    return grad.full_tensor() if hasattr(grad, "full_tensor") else grad


def shard(batch_size: int, units: Tensor) -> Shard:
    """Sizes of every rank's shard (one ``all_gather``)."""
    mine = torch.tensor([float(batch_size), float(units)], dtype=torch.float64, device=units.device)
    sizes = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, mine)
    table = torch.stack(sizes).tolist()
    rank, total_units = dist.get_rank(), sum(u for _, u in table)
    offset = int(sum(b for b, _ in table[:rank]))
    return Shard(offset, int(sum(b for b, _ in table)), float(units) / total_units, int(total_units))


def all_sum(values: Tensor) -> Tensor:
    out = values.clone()
    dist.all_reduce(out)
    return out


def global_sums(
    loss: Tensor, g_sq: Tensor, draws: Tensor, grad: list[Tensor] | None, part: Shard
) -> tuple[Tensor, Tensor, Tensor, list[Tensor] | None]:
    """A rank's sums made the global batch's (the module docstring's formulas, weight ``w = n_r / N``):
    ``sum_r w loss_r``, ``sum_r w^2 ||g_r||^2``, ``sum_r ||J_r||_F^2`` per probe (and group) in one collective,
    ``sum_r w grad_r`` in another."""
    w = part.weight
    flat = draws.to(torch.float64).reshape(-1)
    sums = all_sum(torch.cat([torch.stack([loss.to(torch.float64) * w, g_sq * w * w]), flat]))
    return sums[0], sums[1], sums[2:].reshape(draws.shape), None if grad is None else weighted_grad(grad, w)


def weighted_grad(grads: list[Tensor], weight: float) -> list[Tensor]:
    """``sum_r w_r grad_r`` on every rank, in one ``all_reduce`` of a flattened buffer."""
    flat = torch.cat([g.reshape(-1).to(torch.float64) for g in grads]) * weight
    dist.all_reduce(flat)
    out, k = [], 0
    for g in grads:
        out.append(flat[k : k + g.numel()].reshape(g.shape).to(g.dtype))
        k += g.numel()
    return out

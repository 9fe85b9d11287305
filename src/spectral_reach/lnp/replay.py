"""Per-sample gradients by replaying a recorded call under ``torch.func.vmap`` over the batch.

For a recorded call ``y = op(x, theta)`` whose batched inputs ``x`` carry the batch on dim 0,
and the gradient ``G = ds/dy`` that reached its outputs (``s = sum_i v_i . f_i``), the
gradient of sample ``i`` with respect to ``theta`` is

    d s_i / d theta = d/dtheta < op(x_i, theta), G_i >

for every ``i`` at once: ``vmap(grad(...))``. Each sample is replayed with a batch of one, so
ops that need a batch dimension keep it. A parameter reached by several calls (a head tied to
the embedding, a position table broadcast over the batch, a weight reused functionally) sums
the per-sample gradients of all its calls before it is squared, so cross terms are included:

    n_i = || sum_calls d s_i / d theta ||^2

This materialises ``(chunk, *theta.shape)`` per parameter for a chunk of samples at a time
(:func:`replay_sq_norms`); the fast rules of :mod:`.rules` avoid that for layers used once
through their own forward.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import torch
from torch import Tensor
from torch.func import functional_call, grad, vmap
from torch.utils._pytree import tree_flatten, tree_unflatten

from .errors import UnsupportedModelError
from .rules import accumulation_dtype

if TYPE_CHECKING:
    from .groups import Group

#: Largest per-sample gradient block (elements) a replay materialises at once.
REPLAY_CHUNK_ELEMENTS = 1 << 25

Replay = Callable[[tuple[Tensor, ...], list[Tensor]], list[Tensor]]


def sample_chunk(params: Sequence[Tensor]) -> int:
    """How many samples a replay takes at once, so that their gradients stay under the limit."""
    return max(1, REPLAY_CHUNK_ELEMENTS // max(1, sum(p.numel() for p in params)))


def per_sample_grads(
    fn: Replay,
    params: tuple[Tensor, ...],
    batched: list[Tensor],
    grads: list[Tensor | None],
    out_dims: list[int],
    what: str,
) -> tuple[Tensor, ...]:
    """``(d/dtheta <fn(theta, x_i), G_i>)_i`` for each parameter: tensors ``(b, *theta.shape)``.

    ``fn(params, batched_slices)`` returns the outputs that ``grads`` belong to (``None``: the
    output got no gradient); output ``k`` carries the batch on dimension ``out_dims[k]`` (0, or
    1 for an RNN's final state). ``what`` names the call in errors.
    """
    live = [k for k, g in enumerate(grads) if g is not None]
    b = batched[0].shape[0]
    if not live:
        return tuple(torch.zeros(b, *p.shape, dtype=p.dtype, device=p.device) for p in params)

    def scalar(ps: tuple[Tensor, ...], xs: list[Tensor], gs: list[Tensor]) -> Tensor:
        outs = fn(ps, [x.unsqueeze(0) for x in xs])
        total = torch.zeros(
            (), dtype=torch.float64 if gs[0].dtype == torch.float64 else torch.float32, device=gs[0].device
        )
        for k, g in zip(live, gs):
            g = g.unsqueeze(out_dims[k])
            if outs[k].shape != g.shape:
                raise UnsupportedModelError(
                    f"{what}: replayed for one sample, output {k} has shape {tuple(outs[k].shape)}, "
                    f"not {tuple(g.shape)}: it mixes the batch with a tensor whose first dimension "
                    "is not the batch. Keep the batch on dimension 0."
                )
            total = total + (outs[k].to(total.dtype) * g.to(total.dtype)).sum()
        return total

    try:
        return vmap(grad(scalar), in_dims=(None, 0, [out_dims[k] for k in live]))(
            params, batched, [grads[k] for k in live]
        )
    except UnsupportedModelError:
        raise
    except Exception as err:  # torch.func raises many kinds for calls it cannot batch
        raise UnsupportedModelError(
            f"{what}: its per-sample replay under torch.func.vmap failed ({type(err).__name__}: {err}). "
            "Register a norm rule for the module (spectral_reach.lnp.register_norm_rule), use a "
            "layer that torch.func supports, or freeze its parameters."
        ) from err


def replay_sq_norms(
    g: Group,
    by_id: Mapping[int, Tensor],
    grads: list[Tensor | None],
    batch: int,
    columns: Mapping[int, int] | None = None,
    width: int = 1,
) -> Tensor:
    """``n_i = ||sum_calls d s_i / d theta||^2`` of a replayed group, in float64, ``(b,)``; with
    ``columns`` (parameter id -> group index) split over ``width`` groups, ``(b, width)``.

    Samples go in chunks that keep the per-sample gradients of all the group's parameters under
    :data:`REPLAY_CHUNK_ELEMENTS`; a chunk's gradients (summed over the group's calls) are squared
    before the next chunk is formed, so a tied table's ``(b, V, d)`` block is never held at once
    (BERT-base's 30522 x 768 table: 23M elements a sample)."""
    params = {pid: by_id[pid].detach() for pid in g.params}
    step = sample_chunk(list(params.values()))
    norms = []
    for lo in range(0, batch, step):
        size = min(step, batch - lo)
        chunk = _replay_chunk(g, params, grads, batch, lo, size)
        sq = {
            pid: p.reshape(size, -1).pow(2).sum(1, dtype=accumulation_dtype(p)).to(torch.float64)
            for pid, p in chunk.items()
        }
        if columns is None:
            norms.append(sum(sq.values()))
            continue
        split = next(iter(sq.values())).new_zeros(size, width)
        for pid, n in sq.items():
            split[:, columns[pid]] += n
        norms.append(split)
    return torch.cat(norms)


def _narrow(grads: list[Tensor | None], out_dims: list[int], lo: int, size: int) -> list[Tensor | None]:
    return [None if x is None else x.narrow(d, lo, size) for x, d in zip(grads, out_dims)]


def _replay_chunk(
    g: Group, params: dict[int, Tensor], grads: list[Tensor | None], batch: int, lo: int, size: int
) -> dict[int, Tensor]:
    """Per-sample gradients ``(size, *shape)`` of samples ``lo:lo + size``, summed over the group's calls."""
    if g.how == "module replay":
        return _module_replay(g, params, grads, batch, lo, size)
    out: dict[int, Tensor] = {}
    for call in g.calls:
        n = len(call.outputs)
        call_grads, grads = grads[:n], grads[n:]
        keys = tuple(pid for pid in g.params if pid in call.param_ids)

        def fn(ps: tuple[Tensor, ...], xs: list[Tensor], call=call, keys=keys) -> list[Tensor]:
            return call.replay(dict(zip(keys, ps)), xs, {})

        rows = [torch.arange(lo, lo + size, device=call.outputs[0][1].device)] if call.repeats else []
        got = per_sample_grads(
            fn,
            tuple(params[pid] for pid in keys),
            rows + [call.leaves[i].narrow(0, lo, size) for i in call.batched],
            _narrow(call_grads, call.out_dims, lo, size),
            call.out_dims,
            f"call {call.where()}",
        )
        for pid, value in zip(keys, got):
            out[pid] = value if pid not in out else out[pid] + value
    return out


def _module_replay(
    g: Group, params: dict[int, Tensor], grads: list[Tensor | None], batch: int, lo: int, size: int
) -> dict[int, Tensor]:
    leaves, spec = tree_flatten((g.call.args, g.call.kwargs))
    pos = g.call.batched
    flat_out = tree_flatten(g.call.output)[0]
    picks = [next(i for i, t in enumerate(flat_out) if t is x) for x in g.targets]
    keys = tuple(g.params)
    names = tuple(g.params[pid] for pid in keys)

    def fn(ps: tuple[Tensor, ...], xs: list[Tensor]) -> list[Tensor]:
        filled = list(leaves)
        for i, x in zip(pos, xs):
            filled[i] = x
        args, kwargs = tree_unflatten(filled, spec)
        flat = tree_flatten(functional_call(g.module, dict(zip(names, ps)), args, kwargs))[0]
        return [flat[i] for i in picks]

    got = per_sample_grads(
        fn,
        tuple(params[pid] for pid in keys),
        [leaves[i].narrow(0, lo, size).detach() for i in pos],
        _narrow(grads, g.out_dims, lo, size),
        g.out_dims,
        f"module '{g.name}'",
    )
    return dict(zip(keys, got))

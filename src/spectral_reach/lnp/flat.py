"""Units a loss leaves flat: ignored ones, and hinges this point happens to satisfy.

A mean loss ``L = (1/n) sum_u l_u(f_u)`` counts in ``n`` every unit whose loss depends on its
output. A unit whose gradient is zero at the measured outputs is either

* **ignored** (``ignore_index``, a mask): ``l_u`` never depends on ``f_u``, and ``n`` leaves it out;
* **satisfied** (a hinge ``max(0, m - ...)`` past its margin): ``l_u`` depends on ``f_u`` away
  from this point, and ``n`` counts it (the mean still divides by it).

They are told apart by the loss's structure and, where that cannot tell, by other points:

* a loss is **flat-capable** if, traced once on the outputs (:func:`flat_ops`), an op applied to
  something computed from the outputs can be constant on an open set of them: a clamp, relu or
  max, a rounding, a margin loss, or any op that takes a comparison or an index computed from the
  outputs (``where(f > 0, ...)``, ``gather(f.argmax())``). A loss without one is smooth in its
  outputs, so a unit with a zero gradient near them is ignored (the point is nudged off isolated
  stationary points);
* for a flat-capable loss, the gradient is also taken at other outputs (:func:`probe_points`):
  their negation, zero, each unit's slices made equal along the dimensions inside it (an anchor
  equal to its positive and negative, two ranked scores equal: every margin active), other
  samples' outputs, and random outputs at three scales. A unit with a non-zero gradient at any of
  them depends on its output and counts; a unit flat at all of them is undecided, and the
  measurement is refused asking for ``count_units=`` (never a silent count).
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

LossFn = Callable[[Tensor, Tensor], Tensor]

#: ATen ops (overload packets) that can be constant on an open set of their floating input.
FLAT_OPS = frozenset(
    "clamp clamp_ clamp_min clamp_min_ clamp_max clamp_max_ clip clip_ relu relu_ relu6 hardtanh hardtanh_ "
    "threshold threshold_ hardsigmoid hardswish hardshrink softshrink maximum minimum fmax fmin max min amax amin "
    "sign sgn round floor ceil trunc heaviside multi_margin_loss multilabel_margin_loss "
    "multilabel_margin_loss_forward _local_scalar_dense".split()
)

#: Random probe points: scales (times the outputs' mean magnitude plus one) and draws per scale.
RANDOM_SCALES = (1.0, 10.0, 100.0)
RANDOM_DRAWS = 4


class _Trace(TorchDispatchMode):
    """Records the flat-capable ops applied to tensors computed from ``x`` (strong references are
    kept for the trace's length, so an id is never reused while it is compared)."""

    def __init__(self, x: Tensor) -> None:
        super().__init__()
        self.kept: list[Tensor] = [x]
        self.derived = {id(x)}
        self.flat: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = [a for a in tree_leaves((args, kwargs)) if isinstance(a, Tensor) and id(a) in self.derived]
        if inputs:
            name = func.overloadpacket.__name__
            if name in FLAT_OPS or any(not a.is_floating_point() for a in inputs):
                self.flat.append(name)
            for o in tree_leaves(out):
                if isinstance(o, Tensor):
                    self.kept.append(o)
                    self.derived.add(id(o))
        return out


def flat_ops(loss_fn: LossFn, x: Tensor, targets: Tensor) -> tuple[str, ...]:
    """The flat-capable ops ``loss_fn`` applies to what it computes from ``x`` (module docstring);
    a loss that cannot be traced is taken as flat-capable (probed, never assumed smooth)."""
    x = x.detach().clone()
    try:
        with _Trace(x) as trace, torch.no_grad():
            loss_fn(x, targets)
    except Exception as err:  # whatever the user's loss raises under the trace
        return (f"untraceable: {type(err).__name__}",)
    return tuple(dict.fromkeys(trace.flat))


def probe_points(x: Tensor, inside: tuple[int, ...], generator: torch.Generator) -> Iterator[Tensor]:
    """Other outputs at which a satisfied hinge's gradient is non-zero (module docstring)."""
    yield -x
    yield torch.zeros_like(x)
    for d in inside:
        if x.shape[d] > 1:
            for end in (0, x.shape[d] - 1):
                yield x.narrow(d, end, 1).expand_as(x).clone()
    if x.shape[0] > 1:
        yield x.roll(1, dims=0)
    scale = float(x.abs().mean()) + 1.0
    for s in RANDOM_SCALES:
        for _ in range(RANDOM_DRAWS):
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)
            yield s * scale * noise

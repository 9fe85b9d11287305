"""Which operations of a forward pass touch which trainable parameters (a ``TorchFunctionMode``).

Module hooks see what a layer received and returned, not how its parameters were used: a weight
reused through ``F.linear(x, m.weight)``, a head tied to the embedding, a position table looked
up with ids of batch 1 and broadcast later, all escape them. :class:`ParameterUses` watches every
torch call of the forward pass instead. A call that takes a trainable parameter (or a tensor
computed from parameters alone) is recorded:

* with no argument computed from the model's inputs, it only *derives* a tensor from
  parameters (``W.T``, ``1 + w``, an embedding of position ids): the call is kept to
  recompute it. A derived tensor *repeated over the batch* (peft's virtual tokens
  ``prompt.repeat(b, 1, 1)``, a learned memory ``mem.expand(b, S, d)``: dimension 0 of the
  batch's size, every row equal) is an activation from then on, and the call that made it a
  use whose replay for sample ``i`` takes row ``i`` (the samples meet the same values, each
  its own row, as in the forward pass);
* otherwise it is a *use*: its outputs, with the output gradients, give the per-sample
  gradient of the parameters it involves (:mod:`.replay`), exactly, however the parameter
  reached it, provided its batched arguments carry the batch on dimension 0.

Tensors computed from the model's inputs ("activations") are followed through every call,
so that a parameter applied to a transposed or flattened batch is told apart from one applied
to constants.

Each record notes the innermost parameter-owning module running at that moment, so that
:mod:`.persample` can tell a layer used once through its own forward (fast rules) from every
other use. The mode also refuses active dropout: it makes the measurement random.
"""

from __future__ import annotations

import inspect
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_unflatten

_DROPOUTS = {
    f: inspect.signature(f)
    for f in (F.dropout, F.alpha_dropout, F.feature_alpha_dropout, F.dropout1d, F.dropout2d, F.dropout3d)
}


#: torch's random draws: any of them in the forward pass (stochastic depth's ``torch.rand``,
#: LayerDrop, a ``bernoulli_`` mask) makes the measurement random.
_RANDOM = {
    torch.rand,
    torch.rand_like,
    torch.randn,
    torch.randn_like,
    torch.randint,
    torch.randint_like,
    torch.randperm,
    torch.bernoulli,
    torch.multinomial,
    torch.normal,
    torch.poisson,
    torch.Tensor.bernoulli,
    torch.Tensor.bernoulli_,
    torch.Tensor.uniform_,
    torch.Tensor.normal_,
    torch.Tensor.random_,
    torch.Tensor.exponential_,
    torch.Tensor.geometric_,
    torch.Tensor.cauchy_,
    torch.Tensor.log_normal_,
    torch.Tensor.multinomial,
    F.gumbel_softmax,
}


class RandomForwardError(ValueError):
    """The forward pass draws random numbers (active dropout, stochastic depth, any random op in
    train mode): the measurement would be random."""


@dataclass
class Call:
    """One recorded torch call that involves trainable parameters.

    ``leaves`` are its flattened ``(args, kwargs)`` with tensors detached; ``params``,
    ``derived`` and ``batched`` are positions in ``leaves``. ``outputs`` are the positions (in
    the flattened result) and tensors of its outputs that require grad.
    """

    func: Callable
    spec: Any
    leaves: list[Any]
    params: dict[int, int]  # leaf position -> id of the trainable parameter
    derived: dict[int, tuple["Call", int]]  # leaf position -> (the call that made that tensor, which output)
    batched: list[int]
    outputs: list[tuple[int, Tensor]]
    out_dims: list[int | None]  # where each output carries the batch (None: not found)
    versions: list[int]
    module: str  # innermost parameter-owning module running ('' if none)
    autocast: tuple[str, torch.dtype] | None
    param_ids: frozenset[int]  # every parameter it depends on, directly or through derived tensors
    rows: list[int]  # first dimension of each argument computed from the model's inputs
    shapes: list[tuple[int, ...]]  # the shapes of those arguments
    running: str = ""  # innermost module running at that moment, owning parameters or not
    repeats: bool = False  # derived outputs repeated over the batch: sample i's replay takes row i

    @property
    def name(self) -> str:
        """The call as a user writes it: ``torch.bmm``, ``Tensor.add``, ``linear``."""
        name = getattr(self.func, "__qualname__", None) or getattr(self.func, "__name__", repr(self.func))
        return name.replace("_VariableFunctionsClass.", "torch.").replace("TensorBase.", "Tensor.")

    def where(self) -> str:
        inner = self.running or self.module
        if inner and self.module and inner != self.module and inner.startswith(self.module):
            return f"'{self.name}' in module '{inner}'"
        return f"'{self.name}' in module '{inner or '<root>'}'"

    def replay(self, params: dict[int, Tensor], batched: list[Tensor], memo: dict[int, list[Tensor]]) -> list[Tensor]:
        """The call's recorded outputs, recomputed with ``params`` and the batched leaves given (for a
        call that ``repeats``, the samples' indices: their rows of the outputs)."""
        leaves = list(self.leaves)
        for pos, pid in self.params.items():
            leaves[pos] = params.get(pid, leaves[pos])
        for pos, (source, k) in self.derived.items():
            leaves[pos] = source.derive(params, memo)[k]
        for pos, value in zip(self.batched, batched):
            leaves[pos] = value.clone() if _inplace(self.func) else value
        args, kwargs = tree_unflatten(leaves, self.spec)
        ctx = torch.autocast(*self.autocast) if self.autocast else _null()
        with ctx:
            flat = tree_flatten(self.func(*args, **kwargs))[0]
        if self.repeats:
            return [flat[i].index_select(0, batched[0]) for i, _ in self.outputs]
        return [flat[i] for i, _ in self.outputs]

    def derive(self, params: dict[int, Tensor], memo: dict[int, list[Tensor]]) -> list[Tensor]:
        """The parameter-derived tensors this call made, from ``params`` (once per replay)."""
        if id(self) not in memo:
            memo[id(self)] = self.replay(params, [], memo)
        return memo[id(self)]


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _inplace(func: Callable) -> bool:
    name = getattr(func, "__name__", "")
    return (name.endswith("_") and not name.endswith("__")) or name.startswith("__i")


def _autocast(t: Tensor) -> tuple[str, torch.dtype] | None:
    device = t.device.type
    return (device, torch.get_autocast_dtype(device)) if torch.is_autocast_enabled(device) else None


def _check_random(func: Callable, args: tuple, kwargs: dict, where: str) -> None:
    p = 0.0
    if func in _DROPOUTS:
        bound = _DROPOUTS[func].bind(*args, **kwargs)
        bound.apply_defaults()
        p = bound.arguments["p"] if bound.arguments["training"] else 0.0
    elif func is torch.dropout:
        p = args[1] if args[2] else 0.0
    elif func is F.scaled_dot_product_attention:
        p = kwargs.get("dropout_p", args[4] if len(args) > 4 else 0.0)
    if p:
        raise RandomForwardError(
            f"{where} applies dropout (p={p}) in train mode, so the measurement would be random. "
            "Measure in eval mode (model.eval() around measure(); the training step keeps its "
            "dropout) or pass allow_random=True to measure with dropout on purpose."
        )
    if func in _RANDOM or (func is F.rrelu and kwargs.get("training", args[3] if len(args) > 3 else False)):
        name = getattr(func, "__name__", repr(func))
        raise RandomForwardError(
            f"{where} draws random numbers ({name}: stochastic depth, LayerDrop or another random op in "
            "train mode), so the measurement would be random. Measure in eval mode (model.eval() around "
            "measure()) or pass allow_random=True to measure it on purpose."
        )


def batch_dim(t: Tensor, b: int) -> int | None:
    """Dimension 0 if it has the batch size, else dimension 1 (an RNN's ``h_n``), else ``None``."""
    if t.dim() > 0 and t.shape[0] == b:
        return 0
    if t.dim() > 1 and t.shape[1] == b:
        return 1
    return None


def _tensors_shallow(args: tuple, kwargs: dict):
    for a in (*args, *kwargs.values()):
        if isinstance(a, Tensor):
            yield a
        elif isinstance(a, (list, tuple)):
            yield from (t for t in a if isinstance(t, Tensor))


@dataclass
class ParameterUses(TorchFunctionMode):
    """Record every call that touches a trainable parameter; see the module docstring.

    ``params`` maps ``id(parameter)`` to its name; ``batch_size`` is ``b``; ``stack`` is the
    list of running modules (names, innermost last) kept by :mod:`.persample`'s hooks, with
    ``owning`` the names of the modules that own trainable parameters.
    """

    params: dict[int, str]
    batch_size: int
    stack: list[str]
    owning: set[str]
    allow_random: bool = False
    inputs: Any = None
    uses: list[Call] = field(default_factory=list)
    derived: dict[int, tuple[Call, int]] = field(default_factory=dict)
    touches: dict[int, list[Call]] = field(default_factory=dict)
    activations: "weakref.WeakValueDictionary[int, Tensor]" = field(default_factory=weakref.WeakValueDictionary)
    equal_rows: dict[int, tuple[Tensor, bool]] = field(default_factory=dict)  # per_sample's answers that read values

    def __post_init__(self) -> None:
        super().__init__()
        for t in tree_flatten(self.inputs)[0]:
            if isinstance(t, Tensor):
                self.activations[id(t)] = t

    def _where(self) -> str:
        return f"module '{self.stack[-1]}'" if self.stack else "the model"

    def _owner(self) -> str:
        return next((m for m in reversed(self.stack) if m in self.owning), "")

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self.allow_random:
            _check_random(func, args, kwargs, self._where())
        shallow = list(_tensors_shallow(args, kwargs))
        active = any(id(t) in self.activations for t in shallow)
        touched = any(id(t) in self.params or id(t) in self.derived for t in shallow)
        if not touched or not torch.is_grad_enabled():
            out = func(*args, **kwargs)
            if active:
                self._mark(out)
            return out
        leaves, spec = tree_flatten((args, kwargs))
        params, derived, batched, rows, shapes = self._classify(leaves)
        record = [leaf.detach() if isinstance(leaf, Tensor) else leaf for leaf in leaves]
        if _inplace(func):  # the call overwrites its batched input: keep what it read
            for pos in batched:
                record[pos] = record[pos].clone()
        out = func(*args, **kwargs)
        flat = tree_flatten(out)[0]
        outputs = [(i, t) for i, t in enumerate(flat) if isinstance(t, Tensor) and t.requires_grad]
        repeats = not (active or rows or batched) and self._repeated([t for _, t in outputs])
        if active or rows or batched or repeats:
            self._mark(out)
        if outputs:
            self._record(
                Call(
                    func,
                    spec,
                    record,
                    params,
                    derived,
                    batched,
                    outputs,
                    [batch_dim(t, self.batch_size) for _, t in outputs],
                    [t._version for _, t in outputs],
                    self._owner(),
                    _autocast(outputs[0][1]),
                    frozenset(params.values()).union(*(c.param_ids for c, _ in derived.values())),
                    rows,
                    shapes,
                    self.stack[-1] if self.stack else "",
                    repeats,
                ),
                use=bool(active or rows or batched or repeats),
            )
        return out

    def _repeated(self, outputs: list[Tensor]) -> bool:
        """Derived outputs repeated over the batch: each has the batch's size on dimension 0, every row equal."""
        b = self.batch_size
        return b > 1 and bool(outputs) and all(batch_dim(t, b) == 0 and self._equal_rows(t) for t in outputs)

    def _classify(
        self, leaves: list[Any]
    ) -> tuple[dict[int, int], dict[int, tuple[Call, int]], list[int], list[int], list[tuple[int, ...]]]:
        """Positions of parameters, parameter-derived tensors and batch-first tensors among ``leaves``,
        and the first dimension and shape of each tensor computed from the model's inputs."""
        params, derived, batched, rows, shapes = {}, {}, [], [], []
        for pos, leaf in enumerate(leaves):
            if not isinstance(leaf, Tensor):
                continue
            if id(leaf) in self.params:
                params[pos] = id(leaf)
            elif id(leaf) in self.derived:
                derived[pos] = self.derived[id(leaf)]
            elif self.per_sample(leaf):
                batched.append(pos)
            if id(leaf) in self.activations and leaf.dim() > 0:
                rows.append(leaf.shape[0])
                shapes.append(tuple(leaf.shape))
        return params, derived, batched, rows, shapes

    def per_sample(self, t: Tensor) -> bool:
        """Whether a replay slices ``t`` per sample: its dimension 0 has the batch's size, and it is
        computed from the model's inputs, or its rows are all equal (a tensor made with the batch's
        size, ``torch.zeros(b, h)``: slicing it is exact). A constant whose first dimension only
        happens to equal the batch (a ``(T, T)`` causal mask with ``T == b``) is passed whole;
        telling it from equal rows reads values (a host sync), once per such tensor in a forward pass
        (its calls and its module's hook ask again). Without the inputs (``inputs=None``) nothing is
        known to come from them: the shape alone decides."""
        if batch_dim(t, self.batch_size) != 0:
            return False
        if self.inputs is None or self.activations.get(id(t)) is t:
            return True
        return self._equal_rows(t)

    def _equal_rows(self, t: Tensor) -> bool:
        """Every row of ``t`` equals its first (read once per tensor: a host sync, unless it has one
        row or is expanded with stride 0)."""
        if t.shape[0] == 1 or t.stride(0) == 0:
            return True
        known = self.equal_rows.get(id(t))
        if known is None or known[0] is not t:
            known = self.equal_rows[id(t)] = (t, bool((t == t[:1]).all()))
        return known[1]

    def _record(self, call: Call, use: bool) -> None:
        for pid in call.param_ids:
            self.touches.setdefault(pid, []).append(call)
        if use:
            self.uses.append(call)
        else:
            for k, (_, t) in enumerate(call.outputs):
                self.derived[id(t)] = (call, k)

    def _mark(self, out: Any) -> None:
        if isinstance(out, Tensor):
            self.activations[id(out)] = out
            return
        for t in out if isinstance(out, (tuple, list)) else tree_flatten(out)[0]:
            if isinstance(t, Tensor):
                self.activations[id(t)] = t

    def is_derived(self, t: Tensor) -> bool:
        return id(t) in self.derived

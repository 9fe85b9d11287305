"""Per-sample Jacobian-vector norms for every trainable parameter of a model.

For a scalar ``s = sum_i v_i . f_i``, sample ``i``'s gradient at a parameter depends only on
what sample ``i`` fed into the calls that use it and on ``ds/dy_i`` at their outputs, as long
as samples do not interact. A forward pass is recorded twice over: module hooks capture what
each parameter-owning module received and returned, and :class:`.capture.ParameterUses` records
every torch call that touches a parameter. After the pass, each parameter is measured one of
three ways, all exact:

* **rule**: a module of a type with a norm rule (:mod:`.rules`, or an Opacus sampler) that ran
  once, whose parameters were used once, by the call that made its output, on batch-first
  tensors. Fast, no per-sample gradient is formed.
* **module replay**: any other module that ran once on batch-first tensors and whose
  parameters were used only inside its forward: ``torch.func.vmap`` over its call (:mod:`.replay`).
* **call replay**: every other parameter (tied, shared, reused functionally, broadcast over the
  batch, in a module that ran twice): each recorded call that uses it is replayed per sample and
  the gradients are summed before squaring.

Then ``||J_i^T v_i||^2 = sum n_i`` over the three. The first forward pass of each model and
batch shape is verified once (:meth:`PerSampleNorms.verify`): for a probe on sample 0 alone,
no gradient may reach another sample's slice of any captured tensor (the batch is on dim 0 and
samples do not mix), and each group's norm must equal autograd's gradient of that sample.

Why not Opacus's ``GradSampleModuleFastGradientClipping`` itself: its backward hooks pop the
captured activations, so every probe vector would need a fresh forward pass, and they fire
inside a full backward that also forms every parameter gradient. Its samplers serve as rules
for the layer types they know (convolutions, GroupNorm, ...).
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from .capture import ParameterUses
from .errors import UnsupportedModelError
from .groups import Group, ModuleCall, Recording, opacus_rule, plan
from .model_checks import check_model
from .replay import replay_sq_norms
from .rules import NormRule, own_type, rule_for

__all__ = ["PerSampleNorms", "UnsupportedModelError"]

# The three caches below are per model, keyed on its ``cache_owner`` where it has one: a wrapper
# made afresh for each measurement (``measure(LogitsOnly(model), ...)``) then shares the caches of
# the model it wraps, and the plan is verified once per model, not at every step (that check cost
# a demo language model 23% of its LNP time).

#: Models whose forward structure (by signature) has passed :meth:`PerSampleNorms.verify`.
_VERIFIED: "weakref.WeakKeyDictionary[nn.Module, set]" = weakref.WeakKeyDictionary()
#: Modules (by name, per model) whose module replay failed: their parameters use call replay.
_DEMOTED: "weakref.WeakKeyDictionary[nn.Module, set[str]]" = weakref.WeakKeyDictionary()
#: Modules (by name, per model) whose output a later op changes in place: the hook hands on a copy.
_CLONED: "weakref.WeakKeyDictionary[nn.Module, set[str]]" = weakref.WeakKeyDictionary()


class RecordAgain(Exception):
    """An op changed a captured module output in place; the forward pass must be recorded again
    (the module's output is copied from now on, for this model)."""


@dataclass
class PerSampleNorms:
    """Hooks on every module of ``model``; a context manager.

    Inside ``with PerSampleNorms(model) as norms``: run the forward pass inside
    ``with norms.forward(b):``, set :attr:`passes`, then for each probe vector ``v`` (shaped like
    the model output ``f``) :meth:`jvp_sq_norms` returns ``||J_i^T v_i||^2`` per sample.
    Leaving the block removes every hook and cache. With ``columns`` (trainable parameter id ->
    group index, :mod:`.split`), the norms are split over parameter groups: ``(b, groups)``,
    whose rows sum to the whole; without, one column.
    """

    model: nn.Module
    rules: Mapping[type, NormRule] = field(default_factory=dict)
    allow_random: bool = False
    columns: Mapping[int, int] | None = None
    #: Probe vectors that will follow the current forward pass (rules amortise caches over them).
    passes: int = field(default=1, init=False)
    _params: dict[int, str] = field(default_factory=dict, init=False)
    _by_id: dict[int, nn.Parameter] = field(default_factory=dict, init=False)
    _owning: dict[str, nn.Module] = field(default_factory=dict, init=False)
    _handles: list[Any] = field(default_factory=list, init=False)
    _stack: list[str] = field(default_factory=list, init=False)
    _calls: dict[str, list[ModuleCall]] = field(default_factory=dict, init=False)
    _returned: dict[int, Tensor] = field(default_factory=dict, init=False)
    _uses: ParameterUses | None = field(default=None, init=False)
    _recording: bool = field(default=False, init=False)
    _groups: list[Group] = field(default_factory=list, init=False)
    _batch: int = field(default=0, init=False)
    _output: Tensor | None = field(default=None, init=False)
    _owner: nn.Module = field(init=False)

    def __post_init__(self) -> None:
        check_model(self.model)
        self._owner = getattr(self.model, "cache_owner", self.model)
        self._params = {id(p): n for n, p in self.model.named_parameters() if p.requires_grad}
        self._by_id = {id(p): p for p in self.model.parameters() if p.requires_grad}
        for name, module in self.model.named_modules():
            if any(p.requires_grad for p in module.parameters(recurse=False)):
                self._owning[name] = module

    @property
    def width(self) -> int:
        """Number of parameter groups the norms are split over (1 without ``columns``)."""
        return 1 + max(self.columns.values(), default=0) if self.columns else 1

    def _column(self, g: Group) -> int | None:
        """The one column all of ``g``'s parameters fall in, else ``None``."""
        if not self.columns:
            return 0
        cols = {self.columns[pid] for pid in g.params}
        return cols.pop() if len(cols) == 1 else None

    @property
    def owning(self) -> list[str]:
        """Names of the modules that own trainable parameters."""
        return list(self._owning)

    def _rule(self, module: nn.Module) -> NormRule | None:
        kind = own_type(module)
        return self.rules.get(kind) or rule_for(kind) or opacus_rule(module)

    def __enter__(self) -> "PerSampleNorms":
        for name, module in self.model.named_modules():
            self._handles.append(module.register_forward_pre_hook(self._push(name)))
            self._handles.append(module.register_forward_hook(self._pop(name), with_kwargs=True))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._reset()

    def _reset(self) -> None:
        self._stack.clear()
        self._calls.clear()
        self._returned.clear()
        self._groups.clear()
        self._uses, self._output = None, None

    def _push(self, name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            if self._recording:
                self._stack.append(name)

        return hook

    def _pop(self, name: str):
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
            if not self._recording:
                return None
            self._stack.pop()
            if name not in self._owning:
                return None
            leaves, spec = tree_flatten((args, kwargs))
            args_kwargs = tree_unflatten([t.detach() if isinstance(t, Tensor) else t for t in leaves], spec)
            versions = {id(t): t._version for t in tree_flatten(output)[0] if isinstance(t, Tensor)}
            batched = [i for i, t in enumerate(leaves) if isinstance(t, Tensor) and self._uses.per_sample(t)]
            self._calls.setdefault(name, []).append(ModuleCall(*args_kwargs, output, versions, batched))
            if isinstance(output, Tensor) and output.requires_grad and name in _CLONED.get(self._owner, ()):
                # a later in-place op (ReLU(inplace=True)) then changes the copy, not ours
                returned = output.clone()
                self._returned[id(output)] = returned
                return returned
            return None

        return hook

    @contextmanager
    def forward(self, batch_size: int, inputs: Any = None) -> Iterator[None]:
        """Record the forward pass run inside the block on ``inputs``, a batch of ``batch_size``."""
        self._reset()
        self._batch = batch_size
        self._uses = ParameterUses(self._params, batch_size, self._stack, set(self._owning), self.allow_random, inputs)
        self._recording = True
        try:
            with self._uses:
                yield
        except BaseException:
            self._reset()
            raise
        finally:
            self._recording = False

    @property
    def covered(self) -> list[tuple[str, str]]:
        """``(module or parameter group, how)`` of the last forward pass's plan."""
        return [(g.name, g.how) for g in self._groups]

    @property
    def call_replayed(self) -> list[str]:
        """Names of the parameters measured by call replay in the last forward pass's plan."""
        return sorted(n for g in self._groups if g.how == "call replay" for n in g.params.values())

    def plan(self, output: Tensor) -> None:
        """Decide how each parameter touched by the recorded forward pass is measured."""
        if self._uses is None:
            raise RuntimeError("run the model's forward pass inside `with norms.forward(b):` first")
        self._output = output
        for name, calls in self._calls.items():
            for call in calls:
                for t in tree_flatten(call.output)[0]:
                    if isinstance(t, Tensor) and t._version != call.versions[id(t)]:
                        _CLONED.setdefault(self._owner, set()).add(name)
                        raise RecordAgain(name)
        rec = Recording(
            self._params,
            self._batch,
            self._owning,
            self._calls,
            self._uses,
            self._rule,
            self._by_id,
            _DEMOTED.get(self._owner, set()),
        )
        self._groups = plan(rec, output)
        self._stack.clear()
        self._check_versions()  # outputs change only during the recorded forward pass, now over

    def _check_versions(self) -> None:
        for g in self._groups:
            if any(t._version != v for t, v in zip(g.targets, g.versions)):
                raise UnsupportedModelError(
                    f"an output of {g.label} was modified in place after it was computed; per-sample "
                    "norms need it intact. Use the out-of-place form of the op that follows it."
                )

    def _context(self, g: Group) -> Any:
        if not g.prepared:
            g.ctx = g.rule.prepare(g.module, g.call.args, self.passes)
            g.prepared = True
        return g.ctx

    def exact_output_sq_norms(self, output: Tensor) -> Tensor | None:
        """Closed-form ``||J_i||_F^2`` of the rule-measured layers whose output *is* the model output.

        For such a layer (an LM head, a classifier's readout) whose rule has
        ``output_sq_norms``, the probe-vector expectation is known exactly; those layers are
        then left out of :meth:`jvp_sq_norms` for this forward pass (a head tied to the
        embedding only for its own term). Returns ``None`` if no
        layer qualifies. Use with Hutchinson probes only: it replaces their expectation.
        Shape ``(b, width)``: each layer's norms in its group's column.
        """
        total = None
        for g in self._groups:
            if (
                g.rule is not None
                and self._returned.get(id(g.targets[-1]), g.targets[-1]) is output
                and hasattr(g.rule, "output_sq_norms")
            ):
                sq = g.rule.output_sq_norms(g.module, self._context(g))
                if total is None:
                    total = torch.zeros(sq.shape[0], self.width, dtype=sq.dtype, device=sq.device)
                total[:, self._split_column(g)] += sq
                g.exact = len(g.targets) == 1  # a tied head keeps its embedding and cross terms
        return total

    def _grads(self, output: Tensor, v: Tensor, groups: list[Group], extra: list[Tensor] = ()):
        targets = [t for g in groups for t in g.targets]
        grads = torch.autograd.grad(output, targets + list(extra), grad_outputs=v, retain_graph=True, allow_unused=True)
        per_group, k = [], 0
        for g in groups:
            per_group.append(list(grads[k : k + len(g.targets)]))
            k += len(g.targets)
        return per_group, grads[k:]

    def _split_column(self, g: Group) -> int:
        """The column of a group measured as a whole (by a rule); refused when the user's groups
        split its parameters, which a rule cannot tell apart."""
        col = self._column(g)
        if col is None:
            names = ", ".join(sorted(g.params.values()))
            raise ValueError(
                f"the parameter groups split {g.label} (parameters {names}), whose norm rule ({g.how}) measures "
                "them together: put all of its parameters in one group"
            )
        return col

    def _group_sq_norms(self, g: Group, grads: list[Tensor | None], b: int, device) -> Tensor:
        """``(b,)`` norms over all of the group's parameters."""
        if g.rule is not None:
            if any(x is None for x in grads):
                grads = [torch.zeros_like(t) if x is None else x for t, x in zip(g.targets, grads)]
            return g.rule.sq_norms(g.module, self._context(g), grads[0] if len(grads) == 1 else grads).to(torch.float64)
        return replay_sq_norms(g, self._by_id, grads, self._batch)

    def jvp_sq_norms(self, output: Tensor, v: Tensor) -> Tensor:
        """``||J_{i,G}^T v_i||^2`` for each sample ``i`` and parameter group ``G``, ``(b, width)``:
        one backward pass of ``sum_i v_i . f_i``."""
        if self._output is not output:
            self.plan(output)
        b = v.shape[0]
        total = torch.zeros(b, self.width, dtype=torch.float64, device=v.device)
        groups = [g for g in self._groups if not g.exact]
        if not groups:
            return total
        per_group, _ = self._grads(output, v, groups)
        for g, grads in zip(groups, per_group):
            col = self._column(g) if g.rule is None else self._split_column(g)
            if col is not None:
                total[:, col] += self._group_sq_norms(g, grads, b, v.device)
            else:  # a replay whose parameters fall in several groups: per parameter
                total += replay_sq_norms(g, self._by_id, grads, self._batch, self.columns, self.width)
        return total

    def verify(self, output: Tensor, generator: torch.Generator) -> None:
        """Check the plan once per model and forward structure, on a probe of sample 0 alone.

        No gradient of ``v_0 . f_0`` may reach another sample's slice of a captured tensor, and
        each group's norm for sample 0 must equal the squared norm of autograd's gradient of
        ``v_0 . f_0`` with respect to the group's parameters.
        """
        if self._output is not output:
            self.plan(output)
        generator = torch.Generator(device=output.device).manual_seed(generator.initial_seed())
        signature = (
            tuple(output.shape),
            output.dtype,
            torch.is_autocast_enabled(output.device.type),
            tuple((g.name, g.how, len(g.targets)) for g in self._groups),
        )
        if signature in _VERIFIED.get(self._owner, set()):
            return
        from .hutchinson import rademacher

        b = output.shape[0]
        v = torch.zeros_like(output)
        v[0] = rademacher(output.shape[1:], generator, output.dtype, output.device)
        params = [self._by_id[pid] for g in self._groups for pid in g.params]
        per_group, param_grads = self._grads(output, v, self._groups, params)
        low = output.dtype in (torch.float16, torch.bfloat16) or torch.is_autocast_enabled(output.device.type)
        rtol = 5e-2 if low else 1e-6 if output.dtype == torch.float64 else 1e-3
        k = 0
        for g, grads in zip(self._groups, per_group):
            for t, grad, d in zip(g.targets, grads, g.out_dims):
                if b > 1 and grad is not None and bool(grad.narrow(d, 1, b - 1).ne(0).any()):
                    raise UnsupportedModelError(
                        f"{g.label}: the gradient of sample 0 reaches other samples' rows of a tensor it "
                        f"captured (shape {tuple(t.shape)}): dimension 0 is not the batch (a "
                        "sequence-first layer with as many positions as samples?) or samples mix. "
                        "Keep the batch on dimension 0 and samples independent."
                    )
            want = sum(float(gr.double().pow(2).sum()) for gr in param_grads[k : k + len(g.params)] if gr is not None)
            k += len(g.params)
            try:
                got = float(self._group_sq_norms(g, grads, b, output.device)[0])
            except Exception as e:  # a rule or a replay that cannot take this call
                if g.module is None or (g.how == "module replay" and not isinstance(e, UnsupportedModelError)):
                    raise UnsupportedModelError(
                        f"{g.label} ({g.how}) failed: {type(e).__name__}: {e}. Freeze its parameters, or "
                        "register a norm rule for the module (register_norm_rule)."
                    ) from e
                _DEMOTED.setdefault(self._owner, set()).add(g.name)  # its calls are replayed instead, exactly
                self._groups.clear()
                self.plan(output)
                return self.verify(output, generator)
            if abs(got - want) > rtol * max(abs(got), abs(want)) + 1e-30:
                raise UnsupportedModelError(
                    f"{g.label} ({g.how}): its per-sample norm ({got:.6g}) differs from autograd's "
                    f"gradient of one sample ({want:.6g}). Its rule does not fit how the module uses "
                    "its parameters; remove the rule registered for it (the replay then measures it)."
                )
        _VERIFIED.setdefault(self._owner, set()).add(signature)

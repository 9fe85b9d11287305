"""Per-sample Jacobian-vector norms for every trainable parameter of a model, by hooks.

For a scalar ``s = sum_i v_i . f_i`` the per-sample gradient of sample ``i`` at a layer is a
function of what that layer saw of sample ``i`` in the forward pass and of ``ds/dy_i`` at its
output, as long as samples do not interact (no BatchNorm in train mode, no shared parameters).
:class:`PerSampleNorms` captures each covered layer's inputs and output with forward hooks; for
each probe vector it asks autograd for ``ds/dy`` at those outputs only, so no parameter gradient
is ever formed, and hands them to the layer's rule (:mod:`.rules`). Summed over layers:

    ||J_i^T v_i||^2 = sum_layers n_i(layer)

Why not Opacus's ``GradSampleModuleFastGradientClipping`` itself: its backward hooks pop the
captured activations, so every probe vector would need a fresh forward pass, and they fire
inside a full backward that also forms every parameter gradient. We keep Opacus's samplers as
the fallback for layers we have no rule for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import torch
from torch import Tensor, nn

from .rules import RULES, NormRule, OpacusSamplerRule


class UnsupportedModelError(ValueError):
    """The model breaks an assumption of the per-sample measurement; the message says how to fix it."""


def _direct_trainable(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters(recurse=False) if p.requires_grad]


def _opacus_rule(module: nn.Module, name: str) -> NormRule:
    """Opacus's norm sampler, else its grad sampler, else its functorch per-sample gradients."""
    from opacus.grad_sample.functorch import ft_compute_per_sample_gradient, prepare_layer
    from opacus.grad_sample.grad_sample_module import GradSampleModule
    from opacus.grad_sample.grad_sample_module_fast_gradient_clipping import (
        GradSampleModuleFastGradientClipping as FastClip,
    )

    kind = type(module)
    if kind in FastClip.NORM_SAMPLERS:
        return OpacusSamplerRule(FastClip.NORM_SAMPLERS[kind], "norm", name)
    if kind in GradSampleModule.GRAD_SAMPLERS:
        return OpacusSamplerRule(GradSampleModule.GRAD_SAMPLERS[kind], "grad", name)
    try:
        prepare_layer(module)
    except Exception as err:  # Opacus raises NotImplementedError, functorch others
        raise UnsupportedModelError(
            f"no per-sample norm rule covers module '{name}' ({kind.__name__}), and Opacus's "
            f"functorch fallback refuses it: {err}. Register one with "
            "spectral_reach.lnp.register_norm_rule, or freeze its parameters."
        ) from err
    return OpacusSamplerRule(ft_compute_per_sample_gradient, "grad", name)


def check_model(model: nn.Module) -> None:
    """Refuse models whose samples interact or whose parameters are shared between layers."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
            raise UnsupportedModelError(
                f"module '{name}' ({type(module).__name__}) is in train mode: batch statistics "
                "mix the samples, so per-sample Jacobians are undefined. Call .eval() on it "
                "before measuring, or use LayerNorm/GroupNorm."
            )
    owners: dict[int, list[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        for p in module.parameters(recurse=False):
            if p.requires_grad:
                owners.setdefault(id(p), []).append(name or "<root>")
    for names in owners.values():
        if len(set(names)) > 1:
            raise UnsupportedModelError(
                f"one trainable parameter is shared by modules {sorted(set(names))} (tied input "
                "and output embeddings?). Its per-sample gradient is the sum over both uses, which "
                "per-layer norms cannot give. Untie it (e.g. tie_word_embeddings=False) or freeze it."
            )


@dataclass
class _Capture:
    name: str
    module: nn.Module
    rule: NormRule
    inputs: tuple[Tensor, ...]
    output: Tensor
    version: int
    ctx: Any = None
    prepared: bool = False
    exact: bool = False  # counted in closed form by exact_output_sq_norms, skipped per probe


@dataclass
class PerSampleNorms:
    """Forward hooks on every module that owns trainable parameters; a context manager.

    Inside ``with PerSampleNorms(model) as norms``: call :meth:`start` before a forward pass,
    set :attr:`passes`, then for each probe vector ``v`` (shaped like the model output ``f``) :meth:`jvp_sq_norms`
    returns ``||J_i^T v_i||^2`` per sample. Leaving the block removes every hook and cache.
    """

    model: nn.Module
    rules: Mapping[type, NormRule] = field(default_factory=dict)
    _plan: list[tuple[str, nn.Module, NormRule]] = field(default_factory=list, init=False)
    _handles: list[Any] = field(default_factory=list, init=False)
    _captures: dict[int, _Capture] = field(default_factory=dict, init=False)
    #: Probe vectors that will follow the current forward pass (rules amortise caches over them).
    passes: int = field(default=1, init=False)

    def __post_init__(self) -> None:
        check_model(self.model)
        self._plan = list(self._cover(self.model, ""))

    def _cover(self, module: nn.Module, name: str) -> Iterator[tuple[str, nn.Module, NormRule]]:
        rule = self.rules.get(type(module)) or RULES.get(type(module))
        if rule is not None:
            if any(p.requires_grad for p in module.parameters(recurse=False)):
                yield name, module, rule
        elif _direct_trainable(module):
            # Opacus's functorch fallback differentiates all parameters of the module, children
            # included, so its children are not visited again (as Opacus does).
            yield name, module, _opacus_rule(module, name or type(module).__name__)
            return
        for child_name, child in module.named_children():
            yield from self._cover(child, f"{name}.{child_name}" if name else child_name)

    @property
    def covered(self) -> list[tuple[str, str]]:
        """``(module name, rule class)`` for every covered module."""
        return [(n, type(r).__name__) for n, _, r in self._plan]

    def __enter__(self) -> "PerSampleNorms":
        for name, module, rule in self._plan:
            self._handles.append(module.register_forward_hook(self._hook(name, rule)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._captures.clear()
        for _, module, rule in self._plan:
            if isinstance(rule, OpacusSamplerRule) and hasattr(module, "ft_compute_sample_grad"):
                del module.ft_compute_sample_grad

    def _hook(self, name: str, rule: NormRule):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            if not torch.is_grad_enabled():
                return
            if id(module) in self._captures:
                raise UnsupportedModelError(
                    f"module '{name}' ran twice in one forward pass; its parameters are shared "
                    "between uses and per-sample norms would be wrong. Use separate modules."
                )
            out = output if isinstance(output, Tensor) else next(
                (t for t in output if isinstance(t, Tensor) and t.requires_grad), None
            )
            if out is None or not out.requires_grad:
                return
            inputs = tuple(a.detach() for a in args if isinstance(a, Tensor))
            self._captures[id(module)] = _Capture(name, module, rule, inputs, out, out._version)

        return hook

    def start(self) -> None:
        """Forget the last forward pass; call before the next one."""
        self._captures.clear()

    def _context(self, cap: _Capture) -> Any:
        if not cap.prepared:
            cap.ctx = cap.rule.prepare(cap.module, cap.inputs, self.passes)
            cap.prepared = True
        return cap.ctx

    def exact_output_sq_norms(self, output: Tensor) -> Tensor | None:
        """Closed-form ``||J_i||_F^2`` of the layers whose output *is* the model output.

        For such a layer (an LM head, a classifier's readout) whose rule has
        ``output_sq_norms``, the probe-vector expectation is known exactly; those layers are
        then left out of :meth:`jvp_sq_norms` for this forward pass. Returns ``None`` if no
        layer qualifies. Use with Hutchinson probes only: it replaces their expectation.
        """
        total = None
        for cap in self._captures.values():
            if cap.output is output and hasattr(cap.rule, "output_sq_norms"):
                sq = cap.rule.output_sq_norms(cap.module, self._context(cap))
                total = sq if total is None else total + sq
                cap.exact = True
        return total

    def jvp_sq_norms(self, output: Tensor, v: Tensor) -> Tensor:
        """``||J_i^T v_i||^2`` for each sample ``i``: one backward pass of ``sum_i v_i . f_i``."""
        caps = [c for c in self._captures.values() if not c.exact]
        if not self._captures:
            raise UnsupportedModelError(
                "no module with trainable parameters ran in the forward pass of the model; "
                "is every parameter frozen, or was the forward run under torch.no_grad()?"
            )
        for cap in caps:
            if cap.output._version != cap.version:
                raise UnsupportedModelError(
                    f"the output of module '{cap.name}' was modified in place after it was "
                    "computed; per-sample norms need it intact. Avoid in-place ops on it."
                )
        if not caps:
            return torch.zeros(v.shape[0], dtype=torch.float64, device=v.device)
        grads = torch.autograd.grad(
            output, [c.output for c in caps], grad_outputs=v, retain_graph=True, allow_unused=True
        )
        total = torch.zeros(v.shape[0], dtype=torch.float64, device=v.device)
        for cap, grad in zip(caps, grads):
            if grad is not None:
                total += cap.rule.sq_norms(cap.module, self._context(cap), grad)
        return total


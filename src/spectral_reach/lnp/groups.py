"""Which route measures each trainable parameter of a recorded forward pass.

* a rule (:mod:`.rules`, or an Opacus sampler): a module of a covered type that ran once, whose
  parameters were used once, by the call that made its output, on batch-first tensors;
* a tied embedding and head (:class:`.rules.TiedEmbeddingHead`): a table used by exactly one
  ``F.embedding`` and one ``F.linear``;
* a module replay: any other module that ran once on batch-first tensors and used its
  parameters only inside its own forward (``torch.func.vmap`` over its call);
* a call replay: every other parameter, through each recorded call that uses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from .capture import Call, ParameterUses, batch_dim
from .errors import UnsupportedModelError
from .rules import NormRule, OpacusSamplerRule, own_type
from .tied import TiedEmbeddingHead


def opacus_rule(module: nn.Module) -> NormRule | None:
    """Opacus's norm sampler, else its grad sampler, for the module's exact type."""
    from opacus.grad_sample.grad_sample_module import GradSampleModule
    from opacus.grad_sample.grad_sample_module_fast_gradient_clipping import (
        GradSampleModuleFastGradientClipping as FastClip,
    )

    kind = own_type(module)
    if kind in FastClip.NORM_SAMPLERS:
        return OpacusSamplerRule(FastClip.NORM_SAMPLERS[kind], "norm", kind.__name__)
    if kind in GradSampleModule.GRAD_SAMPLERS:
        return OpacusSamplerRule(GradSampleModule.GRAD_SAMPLERS[kind], "grad", kind.__name__)
    return None


@dataclass
class ModuleCall:
    """What one module call received and returned."""

    args: tuple
    kwargs: dict
    output: Any  # what the module returned (before our hook's clone)
    versions: dict[int, int] = field(default_factory=dict)  # id(output tensor) -> version when returned
    batched: list[int] = field(default_factory=list)  # positions in flattened (args, kwargs) sliced per sample


@dataclass
class Group:
    """Parameters measured together: one module by a rule or a replay, or one call-replay set."""

    name: str
    how: str  # rule class name, "module replay" or "call replay"
    params: dict[int, str]  # id -> name inside the module (module replay) or model (call replay)
    targets: list[Tensor]  # tensors whose output gradients the group needs
    versions: list[int]
    out_dims: list[int]  # where each target carries the batch
    module: nn.Module | None = None
    rule: NormRule | None = None
    call: ModuleCall | None = None
    calls: list[Call] = field(default_factory=list)  # call replay: the recorded calls
    ctx: Any = None
    prepared: bool = False
    exact: bool = False  # an output layer counted in closed form by exact_output_sq_norms

    @property
    def label(self) -> str:
        return self.name if self.name.startswith("calls ") else f"module '{self.name}'"


@dataclass
class Recording:
    """What one recorded forward pass saw, for :func:`plan`."""

    params: dict[int, str]  # id -> name of every trainable parameter
    batch: int
    owning: dict[str, nn.Module]  # modules that own trainable parameters, by name
    calls: dict[str, list[ModuleCall]]  # each owning module's calls
    uses: ParameterUses
    rule: Callable[[nn.Module], NormRule | None]
    by_id: dict[int, nn.Parameter]  # the trainable parameters by id
    demoted: set[str]  # modules whose replay failed before: measured by call replay


def plan(rec: Recording, output: Tensor) -> list[Group]:
    """The groups that together measure every parameter the forward pass touched."""
    uses, b = rec.uses, rec.batch
    groups: list[Group] = []
    if uses.is_derived(output):
        raise UnsupportedModelError(
            f"no call in the forward pass combines a trainable parameter with a tensor whose first "
            f"dimension is the batch ({b}): the batch sits elsewhere (a sequence-first layer, "
            "batch_first=False) or is flattened with the tokens. Keep the batch on dimension 0."
        )
    covered: set[int] = set()
    for name, module in rec.owning.items():
        group = _module_group(rec, name, module)
        if group is not None:
            groups.append(group)
            covered.update(group.params)
    hard = {pid for pid in uses.touches if pid not in covered}
    for pid in sorted(hard, key=rec.params.get):
        if pid not in hard:  # a bias already measured with its tied head
            continue
        group = _tied_group(rec, pid, uses.touches[pid], hard)
        if group is not None:
            groups.append(group)
            hard.difference_update(group.params)
    if hard:
        calls = [c for c in uses.uses if c.param_ids & hard]
        for c in calls:
            if not (c.batched or c.repeats) or None in c.out_dims:
                raise UnsupportedModelError(_misplaced_batch(c, [rec.params[p] for p in c.param_ids & hard], b))
        groups.append(
            Group(
                "calls " + ", ".join(dict.fromkeys(c.where() for c in calls)),
                "call replay",
                {pid: rec.params[pid] for pid in hard},
                [t for c in calls for _, t in c.outputs],
                [v for c in calls for v in c.versions],
                [d for c in calls for d in c.out_dims],
                calls=calls,
            )
        )
    return groups


def _tied_group(rec: Recording, pid: int, touches: list[Call], hard: set[int]) -> Group | None:
    """An embedding table that is also the weight of a linear head, and nothing else."""
    emb = [c for c in touches if c.func is F.embedding]
    head = [c for c in touches if c.func is F.linear]
    if len(touches) != 2 or len(emb) != 1 or len(head) != 1:
        return None
    (emb,), (head,) = emb, head
    (emb_args, emb_kw), (head_args, _) = (tree_unflatten(c.leaves, c.spec) for c in (emb, head))
    direct = emb.params.get(1) == pid and head.params.get(1) == pid and not emb.derived and not head.derived
    plain = emb_kw.get("max_norm") is None and not emb_kw.get("scale_grad_by_freq", False)
    bias = head.params.get(2)
    # a head bias (BERT's MLM decoder) is measured with the head when this call alone uses it
    own_bias = bias is not None and bias in hard and rec.uses.touches.get(bias) == [head]
    if not (direct and plain and emb.batched == [0] and head.batched == [0]):
        return None
    if bias is not None and bias in hard and not own_bias:
        return None
    if emb.out_dims != [0] or head.out_dims != [0]:
        return None
    targets = [emb.outputs[0][1], head.outputs[0][1]]
    params = {pid: rec.params[pid], **({bias: rec.params[bias]} if own_bias else {})}
    return Group(
        f"calls {emb.where()}, {head.where()}",
        "TiedEmbeddingHead",
        params,
        targets,
        emb.versions + head.versions,
        [0, 0],
        rule=TiedEmbeddingHead(),
        call=ModuleCall(
            (
                rec.by_id[pid],
                emb_args[0],
                emb_kw.get("padding_idx"),
                head_args[0],
                rec.by_id[bias] if own_bias else None,
            ),
            {},
            None,
        ),
        calls=[emb, head],
    )


def _module_group(rec: Recording, name: str, module: nn.Module) -> Group | None:
    uses = rec.uses
    calls = rec.calls.get(name, [])
    direct = {id(p) for p in module.parameters(recurse=False) if p.requires_grad}
    if len(calls) != 1 or name in rec.demoted:
        return None
    call, b = calls[0], rec.batch
    outs = [t for t in tree_flatten(call.output)[0] if isinstance(t, Tensor) and t.requires_grad]
    dims = [batch_dim(t, b) for t in outs]
    if not outs or None in dims:
        return None
    rule = rec.rule(module)
    if rule is not None:
        if any(dims):
            return None
        out = call.output
        for pid in direct:
            touches = uses.touches.get(pid, [])
            if len(touches) != 1 or touches[0].module != name or not touches[0].batched:
                return None
            if not any(t is out for _, t in touches[0].outputs):
                return None
        if not isinstance(out, Tensor) or not call.args or not isinstance(call.args[0], Tensor):
            return None
        if batch_dim(call.args[0], b) != 0:
            return None
        inputs = tuple(a for a in call.args if isinstance(a, Tensor))
        return Group(
            name,
            type(rule).__name__,
            {pid: rec.params[pid] for pid in direct},
            [out],
            [call.versions[id(out)]],
            [0],
            module,
            rule,
            ModuleCall(inputs, {}, out),
        )
    # a parameter repeated over the batch is replayed by its own call (row i), not with the whole module
    mine = {pid for pid, touches in uses.touches.items() if all(c.module == name and not c.repeats for c in touches)}
    inside = {id(p): n for n, p in module.named_parameters(remove_duplicate=False)}
    if not mine or not mine <= inside.keys() or not (direct & uses.touches.keys()) <= mine:
        return None
    if not call.batched:
        return None
    return Group(
        name,
        "module replay",
        {pid: inside[pid] for pid in mine},
        outs,
        [call.versions[id(t)] for t in outs],
        dims,
        module,
        call=call,
    )


def _misplaced_batch(call: Call, names: list[str], b: int) -> str:
    """Why the batch is not on dimension 0 where ``call`` applies parameters, told apart by the
    shapes of its batched arguments: sequence-first, tokens flattened across samples, or heads
    or windows folded into the batch dimension."""
    shapes = call.shapes or [()]
    if any(len(s) > 1 and s[1] == b and s[0] != b for s in shapes):
        where = (
            f"a sequence-first layout (shape {next(s for s in shapes if len(s) > 1 and s[1] == b)}: the batch is "
            "on dimension 1, batch_first=False)"
        )
        fix = "Use batch-first layers (batch_first=True)"
    elif folded := next((s for s in shapes if s and s[0] > b and s[0] % b == 0), None):
        k = folded[0] // b
        if len(folded) > 2:
            where = (
                f"heads or windows folded into the batch dimension (shape {folded}: {folded[0]} = {b} samples x {k}, "
                "as DeBERTa's relative attention or Swin's windows do)"
            )
        else:
            where = (
                f"the tokens of all samples flattened into one dimension (shape {folded}: {folded[0]} = {b} x {k} rows; "
                "routed or reshaped across samples, as OPT's MLP or a mixture-of-experts router does)"
            )
        fix = "Freeze those parameters, or use an implementation that keeps the batch on dimension 0"
    else:
        where = f"a tensor whose first dimension is not the batch (shapes {shapes})"
        fix = "Keep the batch on dimension 0 of every tensor a parameter meets, or freeze those parameters"
    return (
        f"call {call.where()} applies parameters {', '.join(sorted(names))} to {where}, so per-sample "
        f"gradients cannot be told apart. {fix}."
    )

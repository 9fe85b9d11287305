"""LNP per parameter group (per layer): which parameters make each group's columns of ``J``.

The parameters fall into disjoint groups ``G``; ``J = [J_G1 | J_G2 | ...]`` column-wise, so the
eNTK and the step's loss change split exactly over them:

    Theta = sum_G Theta_G,    Theta_G = J_G J_G^T,
    delta = sum_G delta_G,    delta_G = < grad_G L_B , grad_G L_B' >,
    ||J_i||_F^2 = sum_G ||J_{i,G}||_F^2

Each group has its own network scale and spectral position in its own eNTK ``Theta_G``:

    chi_net_raw_G = ||J_{B,G}||_F ||J_{B',G}||_F,     chi_pos_G = delta_G / (chi_loss_raw chi_net_raw_G)

and the whole network's position is their weighted sum, ``chi_pos = sum_G w_G chi_pos_G`` with
``w_G = chi_net_raw_G / chi_net_raw`` (for ``B' = B`` the share of the trace, ``sum_G w_G = 1``).

Here: :func:`default_groups` (the split of the project's and Hugging Face's transformers:
embedding, each block's attention and MLP, norms, head) and :func:`resolve`, which checks a
user's groups against the model.
"""

from __future__ import annotations

import difflib
import re
from typing import Mapping, Sequence

from torch import nn

#: Name of the group that collects the trainable parameters no user group lists.
REST = "other"

_BLOCK = re.compile(r"(?:^|\.)(?:layers|layer|blocks|block|h)\.(\d+)\.")


def _default_group(name: str, module: nn.Module) -> str:
    """``name``'s group; ``module`` owns the parameter directly."""
    low = name.lower()
    if "norm" in type(module).__name__.lower():
        return "norms"
    if block := _BLOCK.search(low):
        kind = "attention" if re.search(r"attn|attention", low[block.end() :]) else "mlp"
        return f"block{int(block.group(1))}.{kind}"
    if isinstance(module, nn.Embedding) or re.search(r"embed|(?:^|\.)(?:wte|wpe|cls_token)", low):
        return "embedding"
    if re.search(r"(?:^|\.)(?:lm_head|head|classifier|readout|score)(?:\.|$)", low):
        return "head"
    return REST


def default_groups(model: nn.Module) -> dict[str, list[str]]:
    """The project's split of a transformer's trainable parameters, by name, in model order:
    ``embedding`` (token, position and patch embeddings, a class token), ``block{i}.attention``
    and ``block{i}.mlp`` for each block ``i`` (everything in a block that is not a norm and not
    under an attention module is its MLP), ``norms`` (every normalisation layer, by its class
    name), ``head`` (the readout) and ``other`` for anything else (names as
    ``model.named_parameters()`` gives them)."""
    out: dict[str, list[str]] = {}
    for prefix, module in model.named_modules():
        for short, p in module.named_parameters(prefix=prefix, recurse=False):
            if p.requires_grad:
                out.setdefault(_default_group(short, module), []).append(short)
    return out


def resolve(model: nn.Module, groups: Mapping[str, Sequence[str]]) -> tuple[list[str], dict[int, int]]:
    """The group names (``other`` appended when some trainable parameter is in no group) and each
    trainable parameter's group index, by ``id``. Names are ``model.named_parameters()``'s; with a
    ``LogitsOnly`` wrapper, the wrapped model's names work too (without the ``model.`` prefix).

    Raises ``ValueError`` naming the parameter for an unknown or frozen name, a parameter in two
    groups, or an empty group."""
    named = {n: p for n, p in model.named_parameters()}
    inner = getattr(model, "cache_owner", None)
    if inner is not None and inner is not model:
        named.update({n: p for n, p in inner.named_parameters()})
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    names, column, where = list(groups), {}, {}
    if not names:
        raise ValueError("groups is empty: pass {group name: [parameter names]} or None for no split")
    for k, (group, members) in enumerate(groups.items()):
        if isinstance(members, str) or not members:
            raise ValueError(f"groups[{group!r}] must be a non-empty list of parameter names, not {members!r}")
        for name in members:
            if name not in named:
                near = difflib.get_close_matches(name, list(named), n=3)
                hint = f"; did you mean {', '.join(near)}?" if near else "; see model.named_parameters()"
                raise ValueError(f"groups[{group!r}] names parameter {name!r}, which the model does not have{hint}")
            pid = id(named[name])
            if pid not in trainable:
                raise ValueError(f"groups[{group!r}] names parameter {name!r}, which is frozen (requires_grad=False)")
            if column.get(pid, k) != k:
                raise ValueError(
                    f"parameter {name!r} is in groups {where[pid]!r} and {group!r}: groups must be disjoint"
                )
            column[pid], where[pid] = k, group
    if any(pid not in column for pid in trainable):
        if REST in groups:
            raise ValueError(f"some trainable parameters are in no group, and {REST!r} is taken: list them all")
        names.append(REST)
        column.update({pid: len(names) - 1 for pid in trainable if pid not in column})
    return names, column

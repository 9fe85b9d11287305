"""Models the per-sample measurement refuses before it runs anything, each naming the module and the fix.

* fused RNNs (one kernel that ``torch.func`` cannot replay per sample);
* BatchNorm in train mode (batch statistics mix the samples);
* mixture-of-experts layers with trainable parameters: the router picks experts per token and
  the experts run on the tokens of all samples gathered together (Mixtral's, Qwen2-MoE's grouped
  matmuls), so per-sample gradients of the router, the experts and a shared expert cannot be
  told apart. Refused by structure, before a forward pass: a bf16 expert kernel that fails on
  small shapes never runs first.
"""

from __future__ import annotations

from torch import nn

from .errors import UnsupportedModelError

#: Children that route tokens in a mixture-of-experts block (beside its ``experts``).
ROUTER_NAMES = ("gate", "router")


def moe_router(module: nn.Module) -> str | None:
    """The name of ``module``'s router if it is a mixture-of-experts block (children ``experts``
    and a router: ``gate``, ``router``, or a child whose class is a ``...Router``)."""
    children = dict(module.named_children())
    if "experts" not in children:
        return None
    return next(
        (n for n, c in children.items() if n in ROUTER_NAMES or type(c).__name__.endswith("Router")),
        None,
    )


def check_model(model: nn.Module) -> None:
    """Refuse what cannot be measured exactly (module docstring); frozen modules pass."""
    for name, module in model.named_modules():
        trainable = any(p.requires_grad for p in module.parameters())
        if isinstance(module, nn.RNNBase) and trainable:
            raise UnsupportedModelError(
                f"module '{name}' ({type(module).__name__}) runs as one fused kernel that torch.func "
                f"cannot replay per sample. Use opacus.layers.DP{type(module).__name__} instead (same "
                "parameters and maths, built from Linear cells, measured exactly), or freeze it."
            )
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
            raise UnsupportedModelError(
                f"module '{name}' ({type(module).__name__}) is in train mode: batch statistics "
                "mix the samples, so per-sample Jacobians are undefined. Call .eval() on it "
                "before measuring, or use LayerNorm/GroupNorm."
            )
        router = moe_router(module)
        if router is not None and trainable:
            where = f"{name}.{router}" if name else router
            raise UnsupportedModelError(
                f"module '{name}' ({type(module).__name__}) is a mixture-of-experts layer: its router "
                f"'{where}' ({type(module.get_submodule(router)).__name__}) sends each token to experts "
                "that run on the tokens of all samples gathered together, so the per-sample gradients "
                "of its router and experts cannot be told apart. Freeze the mixture-of-experts layers "
                "(requires_grad_(False) on each such block) to measure the rest of the model, or measure "
                "a dense model."
            )

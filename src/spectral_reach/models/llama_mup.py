"""muP for the Llama (Yang et al., Tensor Programs V; rules for Adam), through the ``mup`` package,
as :mod:`.vit` does for the ViTs.

Relative to a base width ``w0`` and the width multiplier ``m = hidden / w0``:

* hidden weight matrices (attention and MLP projections): init ``N(0, sigma^2 / m)`` (``mup.init``),
  learning rate ``lr / m`` (``mup.MuAdamW`` / ``mup.MuSGD``, from the shapes ``mup.set_base_shapes``
  attaches);
* the embedding and the norms: init ``N(0, sigma^2)`` and ones, learning rate ``lr``;
* the readout: ``logits = (output_mult / m) W h``, ``W`` initialised at zero, learning rate ``lr``
  (a head tied to the embedding is the embedding's table, drawn as the embedding: mup's
  ``MuSharedReadout``);
* attention logits ``q.k / d`` instead of ``q.k / sqrt(d)`` (``d`` the head size).

The readout multiplier sits in the final norm, :class:`ReadoutNorm` (``y = factor w xhat``): the
head is a plain ``nn.Linear`` fed ``factor`` times the norm's output, which is the same forward and
the same gradients as multiplying its output (it has no bias), and keeps every state-dict key of
the standard model. The settings travel in ``config.json`` (``mup``), and :func:`restore` puts the
multiplier and the attention scale back on a loaded model (:func:`.llama.load` calls it).

LNP measures :class:`ReadoutNorm` by its own rule (:class:`ReadoutNormRule`), the Llama norm's with
``xhat`` times ``factor``: its per-sample gradient is ``sum_t G_t factor xhat_t``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from transformers import LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from ..lnp.rules import LlamaRMSNormRule, register_norm_rule
from .mup_widths import SETTINGS, at_width, check


class ReadoutNorm(LlamaRMSNorm):
    """The final RMS norm times muP's readout multiplier: ``y = factor * w * xhat(x)``."""

    def __init__(self, hidden_size: int, eps: float, factor: float) -> None:
        super().__init__(hidden_size, eps=eps)
        self.factor = factor

    def forward(self, hidden_states: Tensor) -> Tensor:
        return super().forward(hidden_states) * self.factor

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, factor={self.factor:.6g}"


class ReadoutNormRule(LlamaRMSNormRule):
    """:class:`ReadoutNorm`: the Llama norm's rule on ``factor * xhat``."""

    def normalise(self, module: nn.Module, x: Tensor) -> Tensor:
        return super().normalise(module, x) * module.factor


register_norm_rule(ReadoutNorm, ReadoutNormRule())


def restore(model: LlamaForCausalLM) -> LlamaForCausalLM:
    """Put the readout multiplier and the ``1/d`` attention of ``model.config.mup`` on ``model``
    (a no-op for a standard model). The norm's weight is kept."""
    mup = getattr(model.config, "mup", None)
    if not mup:
        return model
    norm = model.model.norm
    if not isinstance(norm, ReadoutNorm):
        readout = ReadoutNorm(norm.weight.shape[0], norm.variance_epsilon, mup["factor"])
        readout.weight = norm.weight
        model.model.norm = readout
    for module in model.modules():
        if hasattr(module, "scaling") and hasattr(module, "head_dim"):
            module.scaling = 1.0 / module.head_dim
    return model


def build(
    model: LlamaForCausalLM, size: dict[str, Any], plain: Any, seed: int, mup: dict[str, Any]
) -> LlamaForCausalLM:
    """``model`` (a fresh standard Llama of ``size``) in muP: base shapes from ``plain(size)`` at
    ``base_width`` and twice it, every weight drawn again from ``seed`` by the module docstring."""
    import mup as mup_pkg

    check(size, mup)
    base, delta = (plain(at_width(size, w)) for w in (mup["base_width"], 2 * mup["base_width"]))
    mup_pkg.set_base_shapes(model, base, delta=delta, do_assert=False)  # the head is a plain Linear (above)
    torch.manual_seed(seed)
    for name, p in model.named_parameters():  # a tied head is listed once, as the embedding
        if name.startswith("lm_head."):
            nn.init.zeros_(p)
        elif p.dim() >= 2:
            mup_pkg.init.normal_(p, std=mup["init_std"])
    width_mult = model.lm_head.weight.infshape.width_mult()
    model.config.mup = {**{k: mup[k] for k in SETTINGS}, "factor": mup["output_mult"] / width_mult}
    return restore(model)

"""Vision transformers of the paper's Tables 3-4 (transformers ``ViTForImageClassification``),
in standard parameterization or in muP through the ``mup`` package.

muP (Yang et al., 2021-2022; rules of Tensor Programs V for Adam), relative to a base width ``w0``
and a width multiplier ``m = w / w0`` that ``mup.set_base_shapes`` attaches to every parameter:

* hidden (matrix-like) weights: init std ``sigma / sqrt(m)``, Adam learning rate ``lr / m``
  (``mup.MuAdamW``); input weights, biases, norms, embeddings: init std ``sigma``, learning rate ``lr``;
* readout: zero init, its input multiplied by ``output_mult / m`` in the forward pass;
* attention logits ``q . k / d_head`` instead of ``/ sqrt(d_head)``.

``mup.MuReadout`` applies its multiplier inside ``nn.Linear.forward``, which per-sample-gradient
code that hooks ``nn.Linear`` (ours, Opacus) or re-runs it functionally (torch.func) does not see:
the recorded layer input would be ``x``, not ``x * output_mult / m``. The readout here is
``nn.Sequential(WidthScale(output_mult / m), nn.Linear)``: the multiplier is its own module, so
every per-sample method sees the true input of the Linear.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import ViTConfig, ViTForImageClassification

IMAGE_SIZE, CHANNELS, CLASSES = 32, 3, 10


class WidthScale(nn.Module):
    """``x -> factor * x``: muP's readout multiplier, outside the Linear it feeds."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor:.6g}"


def config(
    size: dict[str, Any], image_size: int = IMAGE_SIZE, channels: int = CHANNELS, classes: int = CLASSES
) -> ViTConfig:
    """The transformers config of one table row: ``size`` has hidden, mlp, heads, layers, patch."""
    return ViTConfig(
        hidden_size=size["hidden"],
        intermediate_size=size["mlp"],
        num_attention_heads=size["heads"],
        num_hidden_layers=size["layers"],
        patch_size=size["patch"],
        image_size=image_size,
        num_channels=channels,
        num_labels=classes,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        attn_implementation="sdpa",
    )


def _plain(size: dict[str, Any], seed: int) -> ViTForImageClassification:
    torch.manual_seed(seed)
    return ViTForImageClassification(config(size))


def _at_width(size: dict[str, Any], width: int) -> dict[str, Any]:
    """``size`` at another width with the same head size and MLP ratio (muP's base and delta shapes)."""
    head = size["hidden"] // size["heads"]
    return {**size, "hidden": width, "mlp": width * size["mlp"] // size["hidden"], "heads": max(1, width // head)}


def build(
    size: dict[str, Any], seed: int, parametrization: str = "standard", mup: dict[str, Any] | None = None
) -> ViTForImageClassification:
    """A fresh ViT; ``parametrization`` is ``standard`` or ``mup`` (then ``mup`` holds
    ``base_width``, ``init_std`` and ``output_mult``)."""
    if parametrization == "standard":
        return _plain(size, seed)
    if parametrization != "mup":
        raise ValueError(f"parametrization must be 'standard' or 'mup', not {parametrization!r}")
    import mup as mup_pkg

    model = _plain(size, seed)
    base, delta = (_plain(_at_width(size, w), seed) for w in (mup["base_width"], 2 * mup["base_width"]))
    for m in (model, base, delta):
        m.classifier = nn.Sequential(WidthScale(1.0), nn.Linear(m.config.hidden_size, m.config.num_labels))
    # do_assert=False: mup insists that a (width -> classes) Linear be a MuReadout; ours is a
    # plain nn.Linear behind WidthScale (module docstring), which MuAdamW treats as MuReadout.
    mup_pkg.set_base_shapes(model, base, delta=delta, do_assert=False)
    torch.manual_seed(seed)
    for name, p in model.named_parameters():
        if name.startswith("classifier."):
            nn.init.zeros_(p)
        elif p.dim() >= 2:
            mup_pkg.init.normal_(p, std=mup["init_std"])
    width_mult = model.classifier[1].weight.infshape.width_mult()
    model.classifier[0].factor = mup["output_mult"] / width_mult
    for module in model.modules():
        if hasattr(module, "scaling") and hasattr(module, "head_dim"):
            module.scaling = 1.0 / module.head_dim
    return model


def count_parameters(size: dict[str, Any]) -> int:
    """Parameters of a table row, counted on a model built on the meta device."""
    with torch.device("meta"):
        return sum(p.numel() for p in ViTForImageClassification(config(size)).parameters())

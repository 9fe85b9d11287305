"""The optimizers a language-model run can train with (the paper's Sec. 6 optimizer-side axis).

* ``adamw``: AdamW on every parameter (the paper's setup; :func:`.spec.adamw_settings`).
* ``sgd``: SGD with heavy-ball momentum and coupled weight decay,
  ``theta <- theta - lr (m)``, ``m <- momentum m + grad + weight_decay theta``.
* ``muon``: ``torch.optim.Muon`` (momentum, then the update orthogonalised by Newton-Schulz
  iterations) on the hidden weight matrices, AdamW on the embedding, the head and every vector
  (norms, biases), as Muon's authors train; ``adjust_lr_fn="match_rms_adamw"`` scales Muon's step
  to AdamW's update RMS (``0.2 sqrt(max(A, B))``, Moonshot's rule), so both take the run's
  learning rate and weight decay.

Muon and AdamW then step as one :class:`Combined` optimizer: one set of ``param_groups`` for the
learning-rate schedule, one state dict for checkpoints.

A muP model (``spec.init == "mup"``, :mod:`..models.llama_mup`) trains with ``mup.MuAdamW`` or
``mup.MuSGD``: the same optimizers with each hidden matrix's learning rate divided by its width
multiplier.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .spec import adamw_settings

#: The optimizers :func:`build` knows.
OPTIMIZERS = ("adamw", "sgd", "muon")


class Combined(torch.optim.Optimizer):
    """Several optimizers over disjoint parameters, stepped, zeroed, scheduled and saved as one."""

    def __init__(self, *optimizers: torch.optim.Optimizer) -> None:  # the parts hold the state: no base __init__
        self.optimizers = list(optimizers)
        self.defaults = {}

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """The parts' groups, read live: ``load_state_dict`` replaces a part's group dicts."""
        return [g for o in self.optimizers for g in o.param_groups]

    @property
    def state(self) -> dict:
        return {p: s for o in self.optimizers for p, s in o.state.items()}

    def step(self, closure: Any = None) -> None:
        for o in self.optimizers:
            o.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for o, s in zip(self.optimizers, state_dict["optimizers"], strict=True):
            o.load_state_dict(s)


def _is_hidden_matrix(name: str, p: nn.Parameter) -> bool:
    """A weight matrix inside the network: not the embedding, not the head, not a vector."""
    return p.ndim == 2 and "embed" not in name and "lm_head" not in name


def build(model: nn.Module, spec: Any, device: torch.device) -> torch.optim.Optimizer:
    """The optimizer ``spec.optimizer`` names (``{"name": ..., "momentum": ...}``; ``None``: AdamW)
    over the model's trainable parameters, with the run's learning rate and weight decay."""
    settings = spec.optimizer or {"name": "adamw"}
    name = settings["name"]
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    adamw = adamw_settings(spec, device)
    mup = getattr(spec, "init", "default") == "mup"
    if mup:
        import mup as mup_pkg
    if name == "adamw":
        return (mup_pkg.MuAdamW if mup else torch.optim.AdamW)([p for _, p in named], **adamw)
    if name == "sgd":
        return (mup_pkg.MuSGD if mup else torch.optim.SGD)(
            [p for _, p in named], lr=spec.lr, momentum=settings["momentum"], weight_decay=spec.weight_decay
        )
    if name == "muon":
        matrices = [p for n, p in named if _is_hidden_matrix(n, p)]
        rest = [p for n, p in named if not _is_hidden_matrix(n, p)]
        muon = torch.optim.Muon(
            matrices,
            lr=spec.lr,
            weight_decay=spec.weight_decay,
            momentum=settings["momentum"],
            adjust_lr_fn="match_rms_adamw",
        )
        return Combined(muon, torch.optim.AdamW(rest, **adamw)) if rest else muon
    raise ValueError(f"optimizer {name!r} is not one of {OPTIMIZERS}")

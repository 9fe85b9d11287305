"""Initialisations a language model can start from (the paper's Sec. 6 representation-side axis).

* ``default``: transformers' Llama initialisation, every weight ``N(0, 0.02^2)`` whatever its width.
* ``xavier``: every ``nn.Linear`` weight ``N(0, 2 / (fan_in + fan_out))`` (Glorot and Bengio, 2010).
* ``he``: every ``nn.Linear`` weight ``N(0, 2 / fan_in)`` (He et al., 2015).

The embedding and the norms keep their own initialisation in each. (muP for the Llama is not
here: it needs the readout multiplier and the ``1/d`` attention of :mod:`.vit` in transformers'
Llama attention.)
"""

from __future__ import annotations

import torch
from torch import nn

#: The initialisations :func:`reinit` knows.
INITS = ("default", "xavier", "he")


def reinit(model: nn.Module, init: str, seed: int) -> nn.Module:
    """``model`` with every ``nn.Linear`` weight drawn again as ``init`` says, from ``seed`` (the
    global generator is left as it was); ``default`` leaves the model as it is."""
    if init not in INITS:
        raise ValueError(f"init {init!r} is not one of {INITS}")
    if init == "default":
        return model
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, nn.Linear):
                    if init == "xavier":
                        nn.init.xavier_normal_(module.weight)
                    else:
                        nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
    finally:
        torch.random.set_rng_state(state)
    return model

"""The explicit eNTK of a reduced output space (paper App. D.5, Fig. 12).

For one held-out context, the outputs are the logits at ``positions`` for the token ids
``vocab``: ``f_r = logits[positions][:, vocab]`` flattened (``m = |positions| |vocab|``). With
``J_r = df_r/dtheta`` (explicit, torch.func) and ``g_r`` the gradient of the model's usual
next-token loss with respect to those logits:

    Theta_r = J_r J_r^T,   lhat_k = lambda_k / tr Theta_r,   chat_k^2 = (v_k . g_r)^2 / ||g_r||^2,
    chi_pos_r = sum_k lhat_k chat_k^2,   shift = sum_k chat_k^2 log lhat_k  (the chat^2-weighted mean of log lhat).

A move of ``g_r`` towards smaller eigenvalues during training lowers ``chi_pos_r`` and ``shift``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from ..data import Contexts, read_memmap
from ..lnp import ntk
from ..models import llama
from ..models.llama import lm_loss


class ReducedOutputs(nn.Module):
    """``model(ids)`` restricted to the logits of ``positions`` x ``vocab``, flattened per sample."""

    def __init__(self, model: nn.Module, positions: list[int], vocab: list[int]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("positions", torch.tensor(positions), persistent=False)
        self.register_buffer("vocab", torch.tensor(vocab), persistent=False)

    def forward(self, ids: Tensor) -> Tensor:
        logits = self.model(ids).logits[:, self.positions][:, :, self.vocab]
        return logits.reshape(ids.shape[0], -1)


def linear_loss(outputs: Tensor, weights: Tensor) -> Tensor:
    """``mean_i <w_i, f_i>``: a loss whose output gradient is ``w / b`` (used to hand ``g_r`` to LNP)."""
    return (outputs * weights).sum(-1).mean()


def reduced_gradient(model: nn.Module, ids: Tensor, targets: Tensor, positions: list[int], vocab: list[int]) -> Tensor:
    """``g_r``: the gradient of the full next-token loss w.r.t. the reduced logits, ``(b, m)``."""
    logits = model(ids).logits.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(lm_loss(logits, targets), logits)
    return g[:, positions][:, :, vocab].reshape(ids.shape[0], -1)


def spectrum(model: nn.Module, ids: Tensor, targets: Tensor, positions: list[int], vocab: list[int]) -> ntk.Spectrum:
    """Eigenvalues and gradient projections of ``Theta_r`` (float64) for one batch of contexts."""
    reduced = ReducedOutputs(model, positions, vocab)
    j = ntk.jacobian(reduced, ids).double()
    g = reduced_gradient(model, ids, targets, positions, vocab).reshape(-1).double()
    return ntk.spectrum(ntk.entk(j, j), g)


def table(spec: ntk.Spectrum, stage: str) -> pd.DataFrame:
    return pd.DataFrame(
        {"stage": stage, "k": range(1, len(spec.lhat) + 1), "lhat": spec.lhat.numpy(), "chat_sq": spec.chat_sq.numpy()}
    )


def summary(spec: ntk.Spectrum, stage: str) -> dict[str, float | str]:
    lhat, c = spec.lhat.clamp_min(1e-300), spec.chat_sq
    return {
        "stage": stage,
        "chi_pos": spec.chi_pos,
        "shift": float((c * lhat.log()).sum()),
        "lhat_median": float(lhat.median()),
        "outputs": len(lhat),
        "effective_rank": float(math.exp(-(lhat * lhat.log()).sum())),
    }


def init_vs_trained(
    model_dir: str | Path,
    size: dict,
    data_dir: str | Path,
    context_length: int,
    vocab_size: int,
    seed: int,
    sample: int,
    vocab_count: int,
    positions: list[int],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Spectra (:func:`table`) and summaries (:func:`summary`) of test context ``sample``, restricted to
    ``positions`` and the ``vocab_count`` most frequent training tokens, at initialisation (rebuilt from
    ``size`` and ``seed``) and for the model saved in ``model_dir``; in float64."""
    counts = np.bincount(np.asarray(read_memmap(Path(data_dir) / "train.bin")), minlength=vocab_size)
    vocab = sorted(np.argsort(counts)[::-1][:vocab_count].tolist())
    x, y = Contexts(Path(data_dir) / "test.bin", context_length).get(np.array([sample]))
    if max(positions) >= x.shape[1]:
        raise SystemExit(f"positions {positions}: contexts have {x.shape[1]} predicted tokens")
    models = {
        "init": llama.build(size, vocab_size, context_length, seed, attn="eager"),
        "trained": llama.load(model_dir, attn="eager"),
    }
    tables, rows = [], []
    for stage, model in models.items():
        spec = spectrum(model.double(), x, y, positions, vocab)
        tables.append(table(spec, stage))
        rows.append(summary(spec, stage))
    return pd.concat(tables, ignore_index=True), pd.DataFrame(rows)

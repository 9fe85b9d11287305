"""Tiny models and batches for the LNP tests: one of each shape that ``measure`` accepts."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from spectral_reach.lnp import LogitsOnly


def mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over samples of ``||f - y||^2 / 2``."""
    return 0.5 * (outputs - targets).pow(2).sum(-1).mean()


def seq_ce(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1))


class EmbedLinear(nn.Module):
    """Embedding -> LayerNorm -> Linear -> tanh -> RMSNorm -> Linear over a sequence."""

    def __init__(self, vocab: int = 11, d: int = 6, out: int = 7) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d, padding_idx=0)
        self.ln = nn.LayerNorm(d)
        self.hidden = nn.Linear(d, d)
        self.rms = nn.RMSNorm(d)
        self.head = nn.Linear(d, out)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.rms(torch.tanh(self.hidden(self.ln(self.emb(ids))))))


def mlp(d_in: int = 5, hidden: int = 8, out: int = 3) -> nn.Module:
    return nn.Sequential(
        nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, out)
    )


def tiny_llama(vocab: int = 32, d: int = 16, layers: int = 2, ff: int = 24, heads: int = 2) -> nn.Module:
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=d,
        intermediate_size=ff,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        attn_implementation="eager",
    )
    return LogitsOnly(LlamaForCausalLM(cfg))


def cases(dtype: torch.dtype) -> dict[str, tuple]:
    """``name -> (model, loss_fn, batch, measure_batch)`` in ``dtype``, deterministic."""
    g = torch.Generator().manual_seed(0)
    out = {}
    m = mlp().to(dtype)
    x, y = torch.randn(6, 5, generator=g, dtype=dtype), torch.randn(6, 3, generator=g, dtype=dtype)
    xm, ym = torch.randn(5, 5, generator=g, dtype=dtype), torch.randn(5, 3, generator=g, dtype=dtype)
    out["mse_mlp"] = (m, mse, (x, y), (xm, ym))
    c = mlp(out=4).to(dtype)
    yc, ymc = torch.randint(0, 4, (6,), generator=g), torch.randint(0, 4, (5,), generator=g)
    out["classifier"] = (c, nn.CrossEntropyLoss(), (x, yc), (xm, ymc))
    s = EmbedLinear().to(dtype)
    ids, tgt = torch.randint(0, 11, (4, 5), generator=g), torch.randint(0, 7, (4, 5), generator=g)
    idm, tgm = torch.randint(0, 11, (3, 5), generator=g), torch.randint(0, 7, (3, 5), generator=g)
    out["embed_linear"] = (s, seq_ce, (ids, tgt), (idm, tgm))
    torch.manual_seed(0)
    lm = tiny_llama().to(dtype)
    ids, tgt = torch.randint(0, 32, (3, 8), generator=g), torch.randint(0, 32, (3, 8), generator=g)
    idm, tgm = torch.randint(0, 32, (2, 8), generator=g), torch.randint(0, 32, (2, 8), generator=g)
    out["llama"] = (lm, seq_ce, (ids, tgt), (idm, tgm))
    return out

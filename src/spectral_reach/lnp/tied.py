"""One table used both as an input embedding and as the output head (tied weights)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .rules import EmbeddingRule, LinearRule, _EmbeddingCtx, _LinearCtx, accumulation_dtype


@dataclass
class _TiedCtx:
    embedding: Any  # what EmbeddingRule reads: num_embeddings, padding_idx, scale_grad_by_freq
    head: Any  # what LinearRule reads: in_features, out_features, weight, bias
    embedding_ctx: _EmbeddingCtx
    head_ctx: _LinearCtx
    ids: Tensor  # (b, T_e)
    head_exact: bool = False  # the head term is counted by output_sq_norms, not per probe


class TiedEmbeddingHead:
    """One table ``W`` (V x d) used twice: rows looked up by ids, and as the head ``f = A W^T``.

    The per-sample gradient is ``C_emb + C_head``, with ``C_emb[r] = sum_{t: id_t = r} G^e_t`` and
    ``C_head = G^h^T A``, so

        ||C_emb + C_head||^2 = ||C_emb||^2 + ||C_head||^2 + 2 sum_{t,s} (G^e_t . a_s) G^h_(s, id_t)

    The first two terms are the Embedding and Linear rules; a head bias (BERT's MLM decoder), a
    parameter of its own, adds ``||sum_t G^h_t||^2`` through the Linear rule. The cross term costs
    ``T_e T_h d`` per sample (a ``G^e A^T`` product and a gather of ``G^h`` at the looked-up ids), where forming
    ``C_head`` would cost ``T_h V d``. When the head's output is the model output, the head term's
    expectation over probe vectors is known (:meth:`output_sq_norms`) and the probes estimate the
    other two, as for an untied output layer.
    """

    def prepare(self, module: None, inputs: tuple, passes: int) -> _TiedCtx:
        weight, ids, padding_idx, acts, bias = inputs
        vocab, d = weight.shape
        embedding = _Attributes(num_embeddings=vocab, padding_idx=padding_idx, scale_grad_by_freq=False)
        head = _Attributes(in_features=d, out_features=vocab, weight=weight, bias=bias)
        ids = ids.reshape(ids.shape[0], -1).long()
        return _TiedCtx(
            embedding,
            head,
            EmbeddingRule().prepare(embedding, (ids,), passes),
            LinearRule().prepare(head, (acts,), passes),
            ids,
        )

    def sq_norms(self, module: None, ctx: _TiedCtx, backprops: list[Tensor]) -> Tensor:
        g_emb, g_head = backprops
        b = g_emb.shape[0]
        out = EmbeddingRule().sq_norms(ctx.embedding, ctx.embedding_ctx, g_emb).to(torch.float64)
        if not ctx.head_exact:
            out += LinearRule().sq_norms(ctx.head, ctx.head_ctx, g_head).to(torch.float64)
        acc = accumulation_dtype(g_emb)
        ge = g_emb.reshape(b, -1, g_emb.shape[-1]).to(acc)
        if ctx.embedding_ctx.keep is not None:
            ge = ge * ctx.embedding_ctx.keep.reshape(b, -1, 1).to(acc)
        acts = ctx.head_ctx.acts.to(acc)
        gh = g_head.reshape(b, acts.shape[1], -1)
        at_ids = gh.gather(2, ctx.ids.unsqueeze(1).expand(b, acts.shape[1], ctx.ids.shape[1])).to(acc)
        cross = ((ge @ acts.transpose(1, 2)) * at_ids.transpose(1, 2)).sum((1, 2))
        return out + 2 * cross.to(torch.float64)

    def output_sq_norms(self, module: None, ctx: _TiedCtx) -> Tensor:
        """The head term's expectation, ``V sum_t ||a_t||^2``; later probes leave it out."""
        ctx.head_exact = True
        return LinearRule().output_sq_norms(ctx.head, ctx.head_ctx)


class _Attributes:
    """The few attributes of a module that a rule reads, for a parameter used outside its module."""

    def __init__(self, **attributes: Any) -> None:
        self.__dict__.update(attributes)

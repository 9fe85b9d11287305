"""Llama-2 language models of the paper's Tables 1-2, built with transformers.

Two rows of the tables (hidden 196 with 3 heads, 384 with 5) are not divisible by their head
count. transformers < 5 built them with ``head_dim = hidden // heads`` (the attention projects
to ``heads * head_dim < hidden`` and back), which reproduces the tables' 15.5M and 12.5M; its
version 5 rejects such configs in ``LlamaConfig.validate_architecture``. :class:`LlamaConfigAnyHeads`
keeps every other check and allows ``heads * head_dim <= hidden``; its ``config.json`` is a plain
``llama`` config, and :func:`load` reads it back. The 196/3 row has an odd ``hidden // heads`` (65),
which rotary embeddings cannot take (transformers 4 failed there at the first forward pass); a
size may set ``head_dim`` explicitly (``config/paper.yaml`` uses 64 for it).

The 384/5 rows (15.5M, 12.5M) have ``head_dim = 76``, which SDPA's fused (flash) kernels refuse
(they need a multiple of 8), so it falls back to a kernel that materialises the attention matrix.
``attention="sdpa"`` then becomes ``"sdpa_padded"``: q, k and v are zero-padded to the next
multiple of 8 with the softmax scale of the true head size given explicitly, and the output is
sliced back. The padding adds zeros to every dot product and zero columns to the output, so the
result is the plain attention's (to fp32 rounding), with the same parameters. Heads smaller than
:data:`CPU_MIN_HEAD` take the same route and are padded to it on CPU, where torch's flash
kernel runs them slower than heads of 16 (a demo image model's size s has heads of 8).
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from huggingface_hub.errors import StrictDataclassClassValidationError
from torch import Tensor
from transformers import AttentionInterface, LlamaConfig, LlamaForCausalLM
from transformers.integrations.sdpa_attention import sdpa_attention_forward


class LlamaConfigAnyHeads(LlamaConfig):
    """``LlamaConfig`` that allows ``hidden_size % num_attention_heads != 0`` (``head_dim = hidden // heads``)."""

    def validate(self) -> None:
        for validator in LlamaConfig.__class_validators__:
            if validator.__name__ == "validate_architecture":
                continue
            try:
                validator(self)
            except (ValueError, TypeError) as e:
                raise StrictDataclassClassValidationError(validator=validator.__name__, cause=e) from e
        if self.head_dim * self.num_attention_heads > self.hidden_size:
            raise ValueError(
                f"heads x head_dim = {self.num_attention_heads} x {self.head_dim} exceeds "
                f"hidden_size {self.hidden_size}"
            )


#: On CPU, heads are padded to at least this size. torch 2.13's CPU flash kernel, forward and
#: backward of one causal layer at batch 4, T = 1024, one thread: a head of 8 takes 61 ms, of 12
#: 45 ms, of 16 40 ms, of 24 52 ms.
CPU_MIN_HEAD = 16


def padded_head(d: int, device: torch.device) -> int:
    """The head size SDPA runs ``d`` at: the next multiple of 8, and on CPU at least :data:`CPU_MIN_HEAD`."""
    size = -(-d // 8) * 8
    return max(size, CPU_MIN_HEAD) if device.type == "cpu" else size


def sdpa_padded_attention_forward(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[Tensor, Tensor | None]:
    """transformers' SDPA attention on q, k, v zero-padded to :func:`padded_head`, the softmax scale
    that of the true head size ``d``, the output sliced back to ``d``."""
    d = query.shape[-1]
    scaling = d**-0.5 if scaling is None else scaling
    if pad := padded_head(d, query.device) - d:
        query, key, value = (F.pad(t, (0, pad)) for t in (query, key, value))
    out, weights = sdpa_attention_forward(
        module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
    )
    return out[..., :d], weights


AttentionInterface.register("sdpa_padded", sdpa_padded_attention_forward)


def attention(attn: str, head_dim: int) -> str:
    """The attention implementation for a head size: ``sdpa_padded`` where SDPA's fused kernels
    need padding (a head size not a multiple of 8) or run faster with it (below :data:`CPU_MIN_HEAD`, on CPU)."""
    return "sdpa_padded" if attn == "sdpa" and (head_dim % 8 or head_dim < CPU_MIN_HEAD) else attn


def config(size: dict[str, Any], vocab_size: int, context_length: int, attn: str = "sdpa") -> LlamaConfigAnyHeads:
    """The transformers config of one table row: ``size`` has layers, hidden, ff, heads (and tied, optional)."""
    head_dim = size.get("head_dim", size["hidden"] // size["heads"])
    return LlamaConfigAnyHeads(
        vocab_size=vocab_size,
        hidden_size=size["hidden"],
        intermediate_size=size["ff"],
        num_hidden_layers=size["layers"],
        num_attention_heads=size["heads"],
        num_key_value_heads=size["heads"],
        head_dim=head_dim,
        max_position_embeddings=context_length,
        tie_word_embeddings=bool(size.get("tied", False)),
        attn_implementation=attention(attn, head_dim),
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )


def build(
    size: dict[str, Any],
    vocab_size: int,
    context_length: int,
    seed: int,
    attn: str = "sdpa",
    mup: dict[str, Any] | None = None,
) -> LlamaForCausalLM:
    """A freshly initialised model; ``seed`` fixes the initialisation and nothing else. With ``mup``
    settings (base_width, init_std, output_mult), in muP (:mod:`.llama_mup`)."""
    state = torch.random.get_rng_state()

    def plain(shape: dict[str, Any]) -> LlamaForCausalLM:
        torch.manual_seed(seed)
        return LlamaForCausalLM(config(shape, vocab_size, context_length, attn))

    try:
        if mup is None:
            return plain(size)
        from . import llama_mup

        return llama_mup.build(plain(size), size, plain, seed, mup)
    finally:
        torch.random.set_rng_state(state)


def load(path: str | os.PathLike, attn: str = "sdpa") -> LlamaForCausalLM:
    """A model saved by ``save_pretrained`` (also the uneven-head rows, and muP models: their
    readout multiplier and attention scale are put back from ``config.json``)."""
    cfg = LlamaConfigAnyHeads.from_pretrained(path)
    cfg = LlamaConfigAnyHeads.from_pretrained(path, attn_implementation=attention(attn, cfg.head_dim))
    model = LlamaForCausalLM.from_pretrained(path, config=cfg)
    if getattr(cfg, "mup", None):
        from . import llama_mup

        llama_mup.restore(model)
    return model


def count_parameters(size: dict[str, Any], vocab_size: int) -> int:
    """Parameters of a table row, counted on a model built on the meta device (no memory)."""
    with torch.device("meta"):
        model = LlamaForCausalLM(config(size, vocab_size, 16))
    return sum(p.numel() for p in model.parameters())


def lm_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean next-token cross-entropy over all predicted tokens, computed in fp32."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))

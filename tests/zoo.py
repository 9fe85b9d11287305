"""Tiny versions of the architectures researchers train, for the LNP zoo tests.

Each entry builds ``(model, loss_fn, batch, measure_batch)`` in float64, deterministic, in eval
mode (dropout off). Models cover tied and broadcast parameters, functional reuse, tuple outputs,
attention modules of torch and transformers, convolutions with BatchNorm and in-place ReLU.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
import transformers
from models import seq_ce
from torch import nn

from spectral_reach.lnp import LogitsOnly

V, T, D = 24, 6, 16


def _ids(g: torch.Generator, b: int, vocab: int = V) -> torch.Tensor:
    return torch.randint(0, vocab, (b, T), generator=g)


def _lm(model: nn.Module, wrap: bool = True) -> tuple:
    g = torch.Generator().manual_seed(1)
    return (
        (LogitsOnly(model) if wrap else model).double().eval(),
        seq_ce,
        (_ids(g, 3), _ids(g, 3)),
        (_ids(g, 2), _ids(g, 2)),
    )


SMALL = dict(vocab_size=V, hidden_size=D, intermediate_size=20, num_hidden_layers=2, max_position_embeddings=16)

#: name -> (config class, model class, settings): tiny causal LMs, then sequence classifiers.
CAUSAL_LMS = {
    "gpt2": (
        transformers.GPT2Config,
        transformers.GPT2LMHeadModel,
        dict(vocab_size=V, n_positions=16, n_embd=D, n_layer=2, n_head=2),
    ),
    "gpt_neo_untied": (
        transformers.GPTNeoConfig,
        transformers.GPTNeoForCausalLM,
        dict(
            vocab_size=V,
            max_position_embeddings=16,
            hidden_size=D,
            num_layers=2,
            num_heads=2,
            attention_types=[[["global", "local"], 1]],
            window_size=4,
            tie_word_embeddings=False,
        ),
    ),
    "llama_tied": (
        transformers.LlamaConfig,
        transformers.LlamaForCausalLM,
        dict(SMALL, num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True),
    ),
    "gemma": (
        transformers.GemmaConfig,
        transformers.GemmaForCausalLM,
        dict(SMALL, num_attention_heads=2, num_key_value_heads=1, head_dim=8),
    ),
    "mistral_gqa": (
        transformers.MistralConfig,
        transformers.MistralForCausalLM,
        dict(SMALL, num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False),
    ),
    "qwen3": (
        transformers.Qwen3Config,
        transformers.Qwen3ForCausalLM,
        dict(SMALL, num_attention_heads=2, num_key_value_heads=1, head_dim=8, tie_word_embeddings=True),
    ),
    "opt": (
        transformers.OPTConfig,
        transformers.OPTForCausalLM,
        dict(
            vocab_size=V,
            hidden_size=D,
            ffn_dim=20,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=16,
            word_embed_proj_dim=D,
        ),
    ),
    "mixtral": (
        transformers.MixtralConfig,
        transformers.MixtralForCausalLM,
        dict(
            SMALL,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            num_local_experts=3,
            num_experts_per_tok=2,
        ),
    ),
    "qwen2_moe": (
        transformers.Qwen2MoeConfig,
        transformers.Qwen2MoeForCausalLM,
        dict(
            SMALL,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            moe_intermediate_size=12,
            shared_expert_intermediate_size=20,
            num_experts=3,
            num_experts_per_tok=2,
        ),
    ),
}
CLASSIFIERS = {
    "bert": (
        transformers.BertConfig,
        transformers.BertForSequenceClassification,
        dict(
            vocab_size=V,
            hidden_size=D,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=20,
            max_position_embeddings=16,
            num_labels=3,
        ),
    ),
    "distilbert": (
        transformers.DistilBertConfig,
        transformers.DistilBertForSequenceClassification,
        dict(vocab_size=V, dim=D, n_layers=2, n_heads=2, hidden_dim=20, max_position_embeddings=16, num_labels=3),
    ),
}


def _hf(config_cls, model_cls, settings: dict) -> nn.Module:
    torch.manual_seed(0)
    return model_cls(config_cls(**settings))


def _hf_classifier(name: str) -> tuple:
    model = _hf(*CLASSIFIERS[name])
    g = torch.Generator().manual_seed(1)
    labels = lambda b: torch.randint(0, 3, (b,), generator=g)  # noqa: E731
    return (LogitsOnly(model).double().eval(), nn.CrossEntropyLoss(), (_ids(g, 3), labels(3)), (_ids(g, 2), labels(2)))


class FunctionalReuse(nn.Module):
    """A Linear used through its module and again through ``F.linear`` on its weight."""

    def __init__(self) -> None:
        super().__init__()
        self.inp, self.mid, self.out = nn.Linear(5, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.mid(torch.tanh(self.inp(x))))
        return self.out(torch.tanh(F.linear(h, self.mid.weight)))


class HandTiedHead(nn.Module):
    """Embedding -> LayerNorm -> Linear -> logits ``h @ E^T`` with the embedding table."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.ln, self.mix = nn.Embedding(V, D), nn.LayerNorm(D), nn.Linear(D, D)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.mix(self.ln(self.emb(ids)))) @ self.emb.weight.T


class TiedPadded(nn.Module):
    """``nn.Embedding(padding_idx=0)`` whose table is also the ``nn.Linear`` head's weight."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.mix, self.head = nn.Embedding(V, D, padding_idx=0), nn.Linear(D, D), nn.Linear(D, V, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.mix(self.emb(ids))))


def tied_padded() -> tuple:
    torch.manual_seed(0)
    model, loss_fn, (ids, y), (idm, ym) = _lm(TiedPadded(), wrap=False)
    ids[0, :2] = 0  # padding rows get no gradient from the lookup, but still do from the head
    return model, loss_fn, (ids, y), (idm, ym)


class RNNHead(nn.Module):
    """A recurrent layer whose final state ``h_n`` (not its output sequence) feeds the head."""

    def __init__(self, cell: type) -> None:
        super().__init__()
        self.rnn, self.head = cell(4, 6, batch_first=True), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.rnn(x)[1]
        h = out[0] if isinstance(out, tuple) else out
        return self.head(h[-1])


class SeqFirst(nn.Module):
    """Linear layers applied to a sequence-first ``(T, b, d)`` view of the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 5), nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.a(x.transpose(0, 1)))).transpose(0, 1).mean(1)


class Encoder(nn.Module):
    """``nn.TransformerEncoderLayer`` between an embedding and a readout."""

    def __init__(self, batch_first: bool = True) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.emb = nn.Embedding(V, D)
        self.layer = nn.TransformerEncoderLayer(D, 2, 20, dropout=0.0, batch_first=batch_first)
        self.head = nn.Linear(D, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.emb(ids)
        h = self.layer(h) if self.batch_first else self.layer(h.transpose(0, 1)).transpose(0, 1)
        return self.head(h.mean(1))


class Decoder(nn.Module):
    """``nn.TransformerDecoderLayer`` (causal self-attention, cross-attention to a memory) with
    padding masks, between an embedding and an LM head."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.encode = nn.Embedding(V, D), nn.Linear(D, D)
        self.layer = nn.TransformerDecoderLayer(D, 2, 20, dropout=0.0, batch_first=True)
        self.head = nn.Linear(D, V)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.emb(ids)
        memory = torch.tanh(self.encode(h.flip(1)))
        causal = nn.Transformer.generate_square_subsequent_mask(ids.shape[1], dtype=h.dtype)
        pad = torch.zeros(ids.shape, dtype=h.dtype).masked_fill(ids == 0, float("-inf"))  # float, as the causal mask
        out = self.layer(
            h,
            memory,
            tgt_mask=causal,
            tgt_is_causal=True,
            tgt_key_padding_mask=pad,
            memory_key_padding_mask=pad.flip(1),
        )
        return self.head(out)


def decoder_layer() -> tuple:
    """As many samples as positions (b = T = 6): the (T, T) causal mask has the batch's size."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)

    def ids(b: int) -> torch.Tensor:
        x = torch.randint(1, V, (b, T), generator=g)
        x[0, -2:] = 0  # padding keys, never a whole row: position 0 is a real token
        return x

    return Decoder().double().eval(), seq_ce, (ids(T), ids(T)), (ids(3), ids(3))


class LearnedMemory(nn.Module):
    """A decoder layer cross-attending to a learned memory expanded over the batch (a parameter
    repeated per sample, as Perceiver latents or a memory bank are)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, D)
        self.mem = nn.Parameter(torch.randn(4, D))
        self.layer = nn.TransformerDecoderLayer(D, 2, 20, dropout=0.0, batch_first=True)
        self.head = nn.Linear(D, V)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        memory = self.mem.expand(ids.shape[0], -1, -1)
        return self.head(self.layer(self.emb(ids), memory))


def learned_memory() -> tuple:
    torch.manual_seed(0)
    return _lm(LearnedMemory(), wrap=False)


def peft_prompt_tuning() -> tuple:
    """peft's prompt tuning on a tiny Llama: only the virtual tokens train; peft builds them from a
    parameter and repeats them over the batch (``prompts.repeat(batch_size, 1, 1)``). The targets
    cover the virtual positions too, ignored (-100)."""
    from peft import PromptTuningConfig, TaskType, get_peft_model

    torch.manual_seed(0)
    base = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(**SMALL, num_attention_heads=2, num_key_value_heads=2, attn_implementation="eager")
    )
    model = get_peft_model(base, PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=3))
    g = torch.Generator().manual_seed(1)

    def targets(b: int) -> torch.Tensor:
        return torch.cat([torch.full((b, 3), -100), _ids(g, b)], 1)

    return LogitsOnly(model).double().eval(), seq_ce, (_ids(g, 3), targets(3)), (_ids(g, 2), targets(2))


def conv_bn_relu() -> tuple:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3),
        nn.BatchNorm2d(3),
        nn.ReLU(inplace=True),
        nn.Conv2d(3, 2, 3),
        nn.GroupNorm(1, 2),
        nn.Flatten(),
        nn.Linear(2 * 2 * 2, 3),
    ).double()
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    g = torch.Generator().manual_seed(1)
    x = lambda b: torch.randn(b, 1, 6, 6, generator=g, dtype=torch.float64)  # noqa: E731
    return (
        model.eval(),
        nn.CrossEntropyLoss(),
        (x(4), torch.randint(0, 3, (4,), generator=g)),
        (x(3), torch.randint(0, 3, (3,), generator=g)),
    )


def _classifier(model: nn.Module, make_x: Callable[[torch.Generator, int], torch.Tensor]) -> tuple:
    g = torch.Generator().manual_seed(1)
    return (
        model.double().eval(),
        nn.CrossEntropyLoss(),
        (make_x(g, 4), torch.randint(0, 3, (4,), generator=g)),
        (make_x(g, 3), torch.randint(0, 3, (3,), generator=g)),
    )


def _vec(g: torch.Generator, b: int) -> torch.Tensor:
    return torch.randn(b, 5, generator=g, dtype=torch.float64)


def _seq(g: torch.Generator, b: int) -> torch.Tensor:
    return torch.randn(b, T, 4, generator=g, dtype=torch.float64)


def mup_readout() -> tuple:
    from mup import MuReadout, set_base_shapes

    def make(width: int) -> nn.Module:
        return nn.Sequential(nn.Linear(5, width), nn.Tanh(), MuReadout(width, 3))

    torch.manual_seed(0)
    model = make(8)
    set_base_shapes(model, make(4), delta=make(6))
    return _classifier(model, _vec)


def llama_mup(tied: bool = False) -> tuple:
    """The project's muP Llama (``models/llama_mup.py``): the readout multiplier (0.25) inside the
    final norm, ``1/d`` attention; its zero-initialised head drawn again, so that the norm before it
    has a gradient (tied: the head is the embedding's table)."""
    from spectral_reach.models import llama

    mup = {"base_width": 4, "init_std": 0.02, "output_mult": 1.0}
    size = {"layers": 2, "hidden": D, "ff": 20, "heads": 2, "tied": tied}
    model = llama.build(size, V, 16, seed=0, attn="eager", mup=mup)
    with torch.no_grad():
        model.lm_head.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(2))
        model.model.norm.weight.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(3))
    return _lm(model)


def llama_mup_tied() -> tuple:
    return llama_mup(tied=True)


def build(name: str) -> tuple:
    torch.manual_seed(0)
    simple = {
        "functional_reuse": lambda: _classifier(FunctionalReuse(), _vec),
        "hand_tied_head": lambda: _lm(HandTiedHead(), wrap=False),
        "gru_final_state": lambda: _classifier(RNNHead(nn.GRU), _seq),
        "lstm_final_state": lambda: _classifier(RNNHead(nn.LSTM), _seq),
        "sequence_first": lambda: _classifier(SeqFirst(), _seq),
        "encoder_layer": lambda: _lm_classifier(Encoder()),
        "encoder_layer_seq_first": lambda: _lm_classifier(Encoder(batch_first=False)),
    }
    if name in simple:
        return simple[name]()
    if name in CAUSAL_LMS:
        return _lm(_hf(*CAUSAL_LMS[name]))
    if name in CLASSIFIERS:
        return _hf_classifier(name)
    return globals()[name]()


def _lm_classifier(model: nn.Module) -> tuple:
    return _classifier(model, lambda g, b: _ids(g, b))


EXACT = [
    "tied_padded",
    "gpt2",
    "gpt_neo_untied",
    "bert",
    "llama_tied",
    "gemma",
    "mistral_gqa",
    "qwen3",
    "functional_reuse",
    "hand_tied_head",
    "encoder_layer",
    "decoder_layer",
    "learned_memory",
    "peft_prompt_tuning",
    "conv_bn_relu",
    "mup_readout",
    "llama_mup",
    "llama_mup_tied",
]


def vit() -> tuple:
    torch.manual_seed(0)
    model = transformers.ViTForImageClassification(
        transformers.ViTConfig(
            image_size=8,
            patch_size=4,
            num_channels=1,
            hidden_size=D,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=20,
            num_labels=3,
        )
    )
    return _classifier(LogitsOnly(model), lambda g, b: torch.randn(b, 1, 8, 8, generator=g, dtype=torch.float64))

"""No randomness slips into a measurement, and no raw exception escapes it: random draws in the
forward pass are refused naming the module, a rule that fails falls back to an exact replay,
and the usual mistakes get messages that say what to do."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spectral_reach.lnp import LogitsOnly, measure
from spectral_reach.lnp.capture import RandomForwardError
from spectral_reach.lnp.ntk import reference_lnp


class DropPath(nn.Module):
    """Stochastic depth as timm writes it (ConvNeXt, Swin): a per-sample keep mask from torch.rand."""

    def __init__(self, p: float, draw) -> None:
        super().__init__()
        self.p, self.draw = p, draw

    def forward(self, x):
        if not self.training:
            return x
        keep = self.draw(x)
        return x * keep / (1 - self.p)


class Block(nn.Module):
    def __init__(self, draw) -> None:
        super().__init__()
        self.fc, self.drop = nn.Linear(4, 4), DropPath(0.3, draw)

    def forward(self, x):
        return x + self.drop(self.fc(x))


DRAWS = {
    "torch.rand (timm drop_path)": lambda x: (torch.rand(x.shape[0], 1) > 0.3).to(x.dtype),
    "bernoulli_ mask": lambda x: x.new_empty(x.shape[0], 1).bernoulli_(0.7),
    "LayerDrop's torch.rand([])": lambda x: (torch.rand([]) > 0.3).to(x.dtype),
    "aten op unseen by the mode": lambda x: (torch.ops.aten.rand.default([x.shape[0], 1]) > 0.3).to(x.dtype),
}


@pytest.mark.parametrize("draw", DRAWS.values(), ids=DRAWS.keys())
def test_any_random_draw_in_the_forward_is_refused(draw):
    torch.manual_seed(0)
    model = nn.Sequential(Block(draw), nn.Linear(4, 3)).train()
    batch = (torch.randn(5, 4), torch.randint(3, (5,)))
    with pytest.raises(RandomForwardError, match=r"random.*model.eval\(\).*allow_random=True"):
        measure(model, F.cross_entropy, batch)
    assert measure(model, F.cross_entropy, batch, allow_random=True).n_units == 5
    model.eval()
    a, b = measure(model, F.cross_entropy, batch), measure(model, F.cross_entropy, batch)
    assert a.chi_pos == b.chi_pos


def test_the_refusal_names_the_module():
    model = nn.Sequential(Block(DRAWS["torch.rand (timm drop_path)"]), nn.Linear(4, 3)).train()
    with pytest.raises(RandomForwardError, match=r"module '0.drop' draws random numbers \(rand"):
        measure(model, F.cross_entropy, (torch.randn(5, 4), torch.randint(3, (5,))))


def test_embedding_bag_with_2d_ids_is_exact():
    """Opacus's EmbeddingBag sampler wants offsets and raised inside; the module is replayed instead."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.EmbeddingBag(20, 6, mode="mean"), nn.Linear(6, 4)).double()
    batch = (torch.randint(20, (5, 7)), torch.randint(4, (5,)))
    got, ref = measure(model, F.cross_entropy, batch, hutchinson=None), reference_lnp(model, F.cross_entropy, batch)
    assert got.chi_net_raw == pytest.approx(ref.chi_net_raw, rel=1e-10)
    assert got.chi_pos == pytest.approx(ref.chi_pos, rel=1e-10)


def test_train_grad_without_backward_says_to_call_it():
    model = nn.Linear(4, 3)
    batch = (torch.randn(5, 4), torch.randint(3, (5,)))
    with pytest.raises(ValueError, match=r"train_grad\[0\] is None \(parameter 'weight'\): call loss.backward\(\)"):
        measure(model, F.cross_entropy, batch, train_grad=[p.grad for p in model.parameters()])


class KeywordModel(nn.Module):
    """A Hugging Face-style model: keyword inputs, an output object with ``.logits``."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.head = nn.Embedding(10, 6), nn.Linear(6, 10)

    def forward(self, input_ids, attention_mask):
        h = self.embed(input_ids) * attention_mask.unsqueeze(-1)
        return SimpleNamespace(logits=self.head(torch.tanh(h)))


def test_dict_inputs_are_passed_as_keyword_arguments():
    torch.manual_seed(0)
    model = LogitsOnly(KeywordModel().double())
    ids = torch.randint(10, (3, 5))
    inputs = {"input_ids": ids, "attention_mask": torch.ones(3, 5, dtype=torch.float64)}
    loss_fn = lambda o, y: F.cross_entropy(o.flatten(0, 1), y.flatten())  # noqa: E731
    got = measure(model, loss_fn, (inputs, ids), hutchinson=None)

    class Positional(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(**x)

    ref = reference_lnp(Positional(model), loss_fn, (inputs, ids))
    assert got.n_units == 15 and got.batch_size == 3
    assert got.chi_pos == pytest.approx(ref.chi_pos, rel=1e-10)


class FoldedHeads(nn.Module):
    """Heads folded into dimension 0 before a parameter meets them, as DeBERTa's relative attention does."""

    def __init__(self) -> None:
        super().__init__()
        self.qk, self.out = nn.Linear(4, 4), nn.Linear(4, 3)

    def forward(self, x):  # (b, T, 4) -> (b * 2, T, 2) -> a per-head scale -> (b, T, 4)
        b, t, _ = x.shape
        heads = x.reshape(b, t, 2, 2).transpose(1, 2).reshape(b * 2, t, 2)
        heads = F.linear(heads, self.qk.weight[:2, :2])
        return self.out(heads.reshape(b, 2, t, 2).transpose(1, 2).reshape(b, t, 4)).mean(1)


def test_heads_folded_into_the_batch_are_named_as_such():
    model = FoldedHeads()
    with pytest.raises(
        Exception,
        match=r"call 'linear' in module '<root>' applies parameters qk.weight to heads or windows folded into the batch dimension \(shape \(10, 3, 2\): 10 = 5 samples x 2",
    ):
        measure(model, F.cross_entropy, (torch.randn(5, 3, 4), torch.randint(3, (5,))))


def test_bert_mlm_tied_decoder_with_bias_is_exact_on_the_tied_route():
    """BERT's MLM decoder: weight tied to the word embedding, a bias of its own. It used to fall to
    call replay (a (b, V, d) block); the tied rule now takes the bias."""
    from transformers import BertConfig, BertForMaskedLM

    from spectral_reach.lnp import PerSampleNorms

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        tie_word_embeddings=True,
    )
    model = LogitsOnly(BertForMaskedLM(cfg).double().eval())
    ids = torch.randint(50, (3, 6))
    targets = ids.clone()
    targets[:, ::2] = -100
    loss_fn = lambda o, y: F.cross_entropy(o.flatten(0, 1), y.flatten())  # noqa: E731
    with PerSampleNorms(model) as norms:
        with norms.forward(3, ids):
            out = model(ids)
        norms.plan(out)
        tied = [name for name, how in norms.covered if how == "TiedEmbeddingHead"]
    assert len(tied) == 1 and "word_embeddings" in tied[0] and "decoder" in tied[0]
    assert "cls.predictions.bias" not in " ".join(norms.call_replayed)
    got, ref = measure(model, loss_fn, (ids, targets), hutchinson=None), reference_lnp(model, loss_fn, (ids, targets))
    assert got.n_units == 9
    assert got.chi_net_raw == pytest.approx(ref.chi_net_raw, rel=1e-10)
    assert got.chi_pos == pytest.approx(ref.chi_pos, rel=1e-8)


def test_call_replay_squares_chunk_by_chunk(monkeypatch):
    """A table reused by hand (h @ E.T) goes to call replay; with a limit of one sample's gradient the
    replay holds one sample at a time and gives the same numbers."""
    from spectral_reach.lnp import replay

    class HandTied(nn.Module):
        def __init__(self):
            super().__init__()
            self.table = nn.Embedding(12, 5)

        def forward(self, ids):
            return torch.tanh(self.table(ids)) @ self.table.weight.T

    torch.manual_seed(0)
    model = HandTied().double()
    batch = (torch.randint(12, (4, 3)), torch.randint(12, (4, 3)))
    loss_fn = lambda o, y: F.cross_entropy(o.flatten(0, 1), y.flatten())  # noqa: E731
    whole = measure(model, loss_fn, batch, hutchinson=None)
    seen, real = [], replay.per_sample_grads

    def spy(fn, params, batched, *rest):
        seen.append(batched[0].shape[0])
        return real(fn, params, batched, *rest)

    monkeypatch.setattr(replay, "REPLAY_CHUNK_ELEMENTS", 12 * 5)
    monkeypatch.setattr(replay, "per_sample_grads", spy)
    chunked = measure(model, loss_fn, batch, hutchinson=None)
    assert seen and max(seen) == 1
    assert chunked.chi_net_raw == pytest.approx(whole.chi_net_raw, rel=1e-12)
    assert chunked.chi_pos == pytest.approx(whole.chi_pos, rel=1e-12)

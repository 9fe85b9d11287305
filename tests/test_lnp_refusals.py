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

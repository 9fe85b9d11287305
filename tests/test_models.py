"""Parameter counts of every row of the paper's Tables 1-2 (config/paper.yaml), and the
uneven-head rows that transformers 5 rejects by default."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from spectral_reach.analysis.lm import label_matches, label_params
from spectral_reach.models import llama

PAPER = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "paper.yaml").read_text())
ROWS = [(d, name, size) for d in ("simplestories", "cifar5m") for name, size in PAPER["lm"][d]["sizes"].items()]


@pytest.mark.parametrize("dataset, name, size", ROWS, ids=[f"{d}-{n}" for d, n, _ in ROWS])
def test_parameter_count_matches_the_table(dataset, name, size):
    shape = {k: v for k, v in size.items() if k not in ("lr", "resources")}
    vocab = PAPER["data"][dataset].get("vocab_size", 256)
    measured = llama.count_parameters(shape, vocab)
    if name == "3.8M":  # trains tied, as its count says (untied: 4.62M); head_dim 64: 65 is odd for RoPE
        assert shape["tied"] and abs(llama.count_parameters({**shape, "tied": False}, vocab) / 4.62e6 - 1) < 0.01
    assert label_matches(name, measured, 0.01), measured  # the label rounds the count ('1.2M' = 1.23M)
    assert abs(measured / label_params(name) - 1) < 0.025


def test_label_matches_rounds_at_the_labels_precision():
    assert label_matches("1.2M", 1_229_664) and label_matches("102.6K", 102_624)
    assert label_matches("229.7K", 229_824, 0.01) and not label_matches("229.7K", 229_824, 1e-4)
    assert not label_matches("1.2M", 1_260_000) and not label_matches("134M", 131_000_000)


def test_uneven_heads_build_save_and_load(tmp_path):
    size = {"layers": 1, "hidden": 40, "ff": 16, "heads": 5, "head_dim": 6}
    model = llama.build(size, 50, 32, seed=0)
    assert model.model.layers[0].self_attn.q_proj.weight.shape == (30, 40)
    model.save_pretrained(tmp_path)
    again = llama.load(tmp_path)
    x = torch.randint(0, 50, (2, 7))
    assert torch.equal(model(x).logits, again(x).logits)
    assert llama.build(size, 50, 32, seed=0).state_dict()["lm_head.weight"].equal(model.state_dict()["lm_head.weight"])


@pytest.mark.parametrize("hidden, heads", [(30, 5), (16, 2)])
def test_padded_attention_equals_the_plain_path(hidden, heads):
    """Head size 6 (not a multiple of 8) and 8 (below CPU_MIN_HEAD) take the padded SDPA route, padded
    to 16 on CPU; outputs and gradients equal unpadded SDPA's."""
    size = {"layers": 2, "hidden": hidden, "ff": 40, "heads": heads}
    padded = llama.build(size, 50, 32, seed=0).double()
    plain = llama.build(size, 50, 32, seed=0).double()
    plain.config._attn_implementation = "sdpa"  # the same model through SDPA without padding
    assert padded.config._attn_implementation == "sdpa_padded"
    x = torch.randint(0, 50, (3, 20), generator=torch.Generator().manual_seed(0))
    a, b = padded(x).logits, plain(x).logits
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    ga = torch.autograd.grad(a.pow(2).sum(), list(padded.parameters()))
    gb = torch.autograd.grad(b.pow(2).sum(), list(plain.parameters()))
    for u, v in zip(ga, gb):
        torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-12)


def test_padded_head_sizes():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [llama.padded_head(d, cuda) for d in (6, 8, 16, 76)] == [8, 8, 16, 80]
    assert [llama.padded_head(d, cpu) for d in (6, 8, 16, 24, 76)] == [16, 16, 16, 24, 80]


def test_paper_rows_with_head_size_76_take_the_padded_route():
    rows = {n: s for d in ("simplestories", "cifar5m") for n, s in PAPER["lm"][d]["sizes"].items()}
    for name in ("15.5M", "12.5M"):
        shape = {k: v for k, v in rows[name].items() if k not in ("lr", "resources")}
        assert llama.config(shape, 4096, 64).head_dim == 76
        assert llama.config(shape, 4096, 64)._attn_implementation == "sdpa_padded", name
    assert llama.config(rows["1.2M"], 4096, 64)._attn_implementation == "sdpa"


def test_lnp_on_padded_attention_equals_the_explicit_entk():
    from spectral_reach.lnp import LogitsOnly, measure
    from spectral_reach.lnp.ntk import reference_lnp

    model = LogitsOnly(llama.build({"layers": 1, "hidden": 12, "ff": 16, "heads": 2}, 20, 16, seed=0)).double()
    g = torch.Generator().manual_seed(1)
    batch = (torch.randint(0, 20, (2, 6), generator=g), torch.randint(0, 20, (2, 6), generator=g))
    got, ref = measure(model, llama.lm_loss, batch, hutchinson=None), reference_lnp(model, llama.lm_loss, batch)
    assert model.model.config._attn_implementation == "sdpa_padded"
    assert got.chi_net_raw == pytest.approx(ref.chi_net_raw, rel=1e-8)
    assert got.chi_pos == pytest.approx(ref.chi_pos, rel=1e-6)

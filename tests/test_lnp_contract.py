"""``measure`` leaves the model as it found it, and refuses input it cannot measure."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from models import cases, mlp, mse, seq_ce, tiny_llama
from torch import nn

from spectral_reach.lnp import LogitsOnly, UnsupportedModelError, measure


def snapshot(model: nn.Module):
    return (
        {n: p.detach().clone() for n, p in model.named_parameters()},
        {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
        {n: m.training for n, m in model.named_modules()},
        {
            n: (dict(m._forward_hooks), dict(m._backward_hooks), dict(m._forward_pre_hooks), set(vars(m)))
            for n, m in model.named_modules()
        },
    )


def test_model_left_as_found():
    model, loss_fn, batch, other = cases(torch.float32)["llama"]
    model.train()
    model.model.model.layers[0].eval()  # a mixed-mode model stays mixed
    loss_fn(model(batch[0]), batch[1]).backward()  # .grad holds a training step's gradient
    params, grads, modes, hooks = snapshot(model)
    measure(model, loss_fn, batch, other, hutchinson=2)
    params2, grads2, modes2, hooks2 = snapshot(model)
    assert all(torch.equal(params[n], params2[n]) for n in params)
    assert all(torch.equal(grads[n], grads2[n]) for n in grads)
    assert modes == modes2 and hooks == hooks2


def test_tied_embeddings_are_exact():
    """Input embedding and LM head share one tensor: its per-sample norm sums both uses."""
    from spectral_reach.lnp.ntk import reference_lnp

    torch.manual_seed(0)
    model = tiny_llama().double()
    model.model.lm_head.weight = model.model.model.embed_tokens.weight
    ids = torch.randint(0, 32, (2, 8))
    got = measure(model, seq_ce, (ids, ids), hutchinson=None)
    assert got.chi_net_raw == pytest.approx(reference_lnp(model, seq_ce, (ids, ids)).chi_net_raw, rel=1e-8)


def test_batchnorm_in_train_mode_is_refused():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).train()
    batch = (torch.randn(5, 3), torch.randn(5, 2))
    with pytest.raises(UnsupportedModelError, match=r"'1' \(BatchNorm1d\).*\.eval\(\)"):
        measure(model, mse, batch)
    model.eval()
    assert math.isfinite(measure(model, mse, batch).chi_pos)


def test_sum_losses_are_refused():
    model = mlp(out=4)
    batch = (torch.randn(6, 5), torch.randint(0, 4, (6,)))
    with pytest.raises(ValueError, match="reduction='sum'"):
        measure(model, nn.CrossEntropyLoss(reduction="sum"), batch)
    with pytest.raises(ValueError, match="not a mean over loss units"):
        measure(model, lambda f, y: F.cross_entropy(f, y, reduction="sum"), batch)


class Scaled(nn.Module):
    """A module with its own parameter and a buffer, and no norm rule."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))
        self.register_buffer("offset", torch.zeros(3))

    def forward(self, x):
        return x * self.scale + self.offset


def test_module_without_a_rule_is_replayed_exactly():
    from spectral_reach.lnp.ntk import reference_lnp

    model = nn.Sequential(nn.Linear(3, 3), Scaled()).double()
    batch = (torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64))
    got = measure(model, mse, batch, hutchinson=None)
    assert got.chi_net_raw == pytest.approx(reference_lnp(model, mse, batch).chi_net_raw, rel=1e-10)


def test_non_finite_components_are_reported_not_raised():
    model, loss_fn, (x, y), other = cases(torch.float32)["mse_mlp"]
    x = x.clone()
    x[0, 0] = float("nan")
    record = measure(model, loss_fn, (x, y), other)
    assert not record.finite and math.isnan(record.chi_pos)


def test_ignore_index_sets_the_unit_count():
    model, _, (ids, tgt), _ = cases(torch.float64)["embed_linear"]
    tgt = tgt.clone()
    tgt[0, :3] = -100
    ce = nn.CrossEntropyLoss(ignore_index=-100)
    record = measure(model, lambda f, y: ce(f.reshape(-1, f.shape[-1]), y.reshape(-1)), (ids, tgt))
    assert record.n_units == tgt.numel() - 3  # read off the loss's gradient, also through a lambda

    class SeqCE(nn.CrossEntropyLoss):
        def forward(self, f, y):
            return super().forward(f.reshape(-1, f.shape[-1]), y.reshape(-1))

    assert measure(model, SeqCE(ignore_index=-100), (ids, tgt)).n_units == tgt.numel() - 3


def test_train_grad_of_the_wrong_shape_is_refused():
    model, loss_fn, batch, _ = cases(torch.float32)["mse_mlp"]
    with pytest.raises(ValueError, match="one gradient per trainable parameter"):
        measure(model, loss_fn, batch, train_grad=[torch.zeros(1)])


def test_frozen_backbone_counts_only_trainable_parameters():
    model, loss_fn, batch, other = cases(torch.float64)["llama"]
    probe = copy.deepcopy(model)
    for n, p in probe.named_parameters():
        p.requires_grad_(n.endswith("lm_head.weight"))
    record = measure(probe, loss_fn, batch, other, hutchinson=None)
    # lm_head alone: J_i^T e_(t,v) is the final hidden state h_t in row v, so ||J_i||^2 = V sum_t ||h_t||^2
    with torch.no_grad():
        h = probe.model.model(batch[0]).last_hidden_state
    assert record.j_sq == pytest.approx(32 * float(h.pow(2).sum()), rel=1e-10)


def test_output_layer_is_counted_exactly_under_hutchinson():
    """With only the LM head trainable, one Rademacher vector already gives the exact trace."""
    model, loss_fn, batch, _ = cases(torch.float64)["llama"]
    probe = copy.deepcopy(model)
    for n, p in probe.named_parameters():
        p.requires_grad_(n.endswith("lm_head.weight"))
    one = measure(probe, loss_fn, batch, hutchinson=1)
    exact = measure(probe, loss_fn, batch, hutchinson=None)
    assert one.j_sq == pytest.approx(exact.j_sq, rel=1e-12)


def test_bf16_autocast_accumulates_in_fp32():
    """Under bf16 autocast the components stay within bf16 rounding of the fp32 measurement."""
    model, loss_fn, batch, other = cases(torch.float32)["llama"]
    ref = measure(model, loss_fn, batch, other, hutchinson=8, generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = measure(model, loss_fn, batch, other, hutchinson=8, generator=torch.Generator().manual_seed(0))
    for name in ("delta", "chi_loss", "chi_net", "chi_pos"):
        assert getattr(low, name) == pytest.approx(getattr(ref, name), rel=0.02), name
    assert isinstance(low.chi_net, float) and low.j_sq_draws != ref.j_sq_draws  # bf16 really ran


def test_lnp_precision_context_sets_and_restores():
    """The training loop's measurement precision: bf16 autocast inside, TF32 flags restored after."""
    from spectral_reach.train.device import lnp_precision

    model, loss_fn, batch, other = cases(torch.float32)["llama"]
    before = torch.backends.cuda.matmul.allow_tf32
    with lnp_precision("bf16", torch.device("cpu")):
        assert torch.is_autocast_enabled("cpu") and torch.backends.cuda.matmul.allow_tf32
        low = measure(model, loss_fn, batch, other, hutchinson=8, generator=torch.Generator().manual_seed(0))
    assert torch.backends.cuda.matmul.allow_tf32 == before and not torch.is_autocast_enabled("cpu")
    ref = measure(model, loss_fn, batch, other, hutchinson=8, generator=torch.Generator().manual_seed(0))
    assert low.chi_pos == pytest.approx(ref.chi_pos, rel=0.02) and low.chi_pos != ref.chi_pos
    with pytest.raises(ValueError, match="lnp.precision must be one of"):
        with lnp_precision("fp16", torch.device("cpu")):
            pass


def test_a_compiled_model_is_measured_through_its_original_module():
    """Issue 36: measure(torch.compile(model)) traced dynamo into the measurement's hooks and hit its
    recompile limit (23x slower). The compiled module's original module is measured, as DDP is
    unwrapped: the same record as the eager model, and dynamo compiles nothing."""
    from torch._dynamo.utils import counters

    model, loss_fn, batch, other = cases(torch.float64)["llama"]
    model.eval()
    eager = measure(model, loss_fn, batch, other, hutchinson=2)
    counters.clear()
    compiled = measure(torch.compile(model), loss_fn, batch, other, hutchinson=2)
    inner = measure(LogitsOnly(torch.compile(model.model)), loss_fn, batch, other, hutchinson=2)
    assert compiled == eager and inner == eager
    assert not counters["stats"]["unique_graphs"]

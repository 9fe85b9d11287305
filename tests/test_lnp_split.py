"""LNP per parameter group and the optimizer's own step, against the explicit eNTK restricted to
each group's columns of ``J`` and against updates formed by hand."""

import math

import pytest
import torch
from models import cases, mse, tiny_llama
from torch import nn

from spectral_reach.lnp import measure
from spectral_reach.lnp.ntk import entk, jacobian, output_gradient, spectrum
from spectral_reach.lnp.split import REST, default_groups


def _columns(model: nn.Module) -> dict[str, slice]:
    """Each trainable parameter's columns of ``J`` (``model.parameters()`` order)."""
    out, k = {}, 0
    for name, p in model.named_parameters():
        if p.requires_grad:
            out[name] = slice(k, k + p.numel())
            k += p.numel()
    return out


def _side(model, loss_fn, batch):
    inputs, targets = batch
    with torch.no_grad():
        outputs = model(inputs)
    return jacobian(model, inputs).double(), output_gradient(loss_fn, outputs, targets).double()


def group_reference(model, loss_fn, batch, other, groups):
    """``{group: (delta_G, j_sq_G, j_sq_G', chi_pos_G)}`` from ``J`` restricted to each group's columns."""
    cols = _columns(model)
    (j_b, g_b), (j_m, g_m) = _side(model, loss_fn, batch), _side(model, loss_fn, other or batch)
    out = {}
    for name, members in groups.items():
        idx = torch.cat([torch.arange(cols[m].start, cols[m].stop) for m in members])
        jb, jm = j_b[:, idx], j_m[:, idx]
        delta = float(g_m @ entk(jm, jb) @ g_b)
        jsq, jsq_m = float(jb.pow(2).sum()), float(jm.pow(2).sum())
        out[name] = (delta, jsq, jsq_m, delta / float(g_b.norm() * g_m.norm() * math.sqrt(jsq * jsq_m)))
    return out


@pytest.mark.parametrize("variant", ["self", "cross"])
@pytest.mark.parametrize("name", ["llama", "embed_linear", "mse_mlp"])
def test_each_group_equals_the_explicit_entk_of_its_columns(name, variant):
    model, loss_fn, batch, other = cases(torch.float64)[name]
    other = None if variant == "self" else other
    first = next(iter(_columns(model))).rsplit(".", 1)[0]  # the first layer, weight and bias
    groups = (
        default_groups(model) if name == "llama" else {"first": [n for n in _columns(model) if n.startswith(first)]}
    )
    got = measure(model, loss_fn, batch, other, hutchinson=None, groups=groups if name != "llama" else "default")
    if REST in got.groups:
        groups = {**groups, REST: [n for n in _columns(model) if all(n not in v for v in groups.values())]}
    ref = group_reference(model, loss_fn, batch, other, groups)
    assert list(got.groups) == list(groups)
    assert len(got.groups) == (
        2 * 2 + 3 if name == "llama" else 2
    )  # 2 blocks x (attention, mlp), embedding, norms, head
    named = dict(model.named_parameters())
    grads = [
        dict(zip(named, torch.autograd.grad(loss_fn(model(x), y), list(named.values()))))
        for x, y in [batch, other or batch]
    ]
    for g, (delta, jsq, jsq_m, chi_pos) in ref.items():
        rec = got.groups[g]
        by_autograd = sum(float((grads[0][n] * grads[1][n]).sum()) for n in groups[g])
        assert rec.delta == pytest.approx(by_autograd, rel=1e-12, abs=1e-18), g
        # transformers' LlamaRMSNorm computes in fp32 inside an fp64 model (test_lnp_exact.FP32_ISLANDS)
        assert rec.delta == pytest.approx(delta, rel=1e-6, abs=1e-14), g
        assert rec.j_sq == pytest.approx(jsq, rel=1e-8), g
        assert rec.j_sq_measure == pytest.approx(jsq_m, rel=1e-8), g
        assert rec.chi_pos == pytest.approx(chi_pos, rel=1e-6, abs=1e-12), g
    # the groups make the whole: deltas and ||J||^2 add up, chi_pos is their weighted sum
    parts = got.groups.values()
    assert sum(r.delta for r in parts) == pytest.approx(got.delta, rel=1e-12)
    assert sum(r.j_sq for r in parts) == pytest.approx(got.j_sq, rel=1e-12)
    assert sum(r.weight * r.chi_pos for r in parts) == pytest.approx(got.chi_pos, rel=1e-10)
    if variant == "self":
        assert sum(r.weight for r in parts) == pytest.approx(1.0, rel=1e-12)
    # and the whole is what it is without a split
    whole = measure(model, loss_fn, batch, other, hutchinson=None)
    numbers = [k for k, v in whole.as_row().items() if isinstance(v, (int, float)) and k != "delta_update"]
    assert [got.as_row()[k] for k in numbers] == pytest.approx([whole.as_row()[k] for k in numbers], rel=1e-12)
    assert whole.groups == {}


def test_a_groups_chi_pos_is_its_position_in_its_own_entk_spectrum():
    model, loss_fn, batch, _ = cases(torch.float64)["llama"]
    got = measure(model, loss_fn, batch, hutchinson=None, groups="default")
    cols = _columns(model)
    j, g = _side(model, loss_fn, batch)
    for name, members in default_groups(model).items():
        idx = torch.cat([torch.arange(cols[m].start, cols[m].stop) for m in members])
        eig = spectrum(entk(j[:, idx], j[:, idx]), g)
        assert got.groups[name].chi_pos == pytest.approx(eig.chi_pos, rel=1e-6), name
        assert 0.0 <= got.groups[name].chi_pos <= 1.0


def test_hutchinson_group_estimates_are_unbiased_and_add_up():
    """K probes on the tiny Llama: the mean over 24 generators of each group's ||J_G||^2 lies within
    4 standard errors of the explicit value, and each call's groups add to its whole."""
    model, loss_fn, batch, _ = cases(torch.float64)["llama"]
    groups = default_groups(model)
    ref = group_reference(model, loss_fn, batch, None, groups)
    draws = {g: [] for g in groups}
    for seed in range(24):
        rec = measure(model, loss_fn, batch, hutchinson=2, groups=groups, generator=torch.Generator().manual_seed(seed))
        assert sum(r.j_sq for r in rec.groups.values()) == pytest.approx(rec.j_sq, rel=1e-12)
        for g in groups:
            draws[g].append(rec.groups[g].j_sq)
    for g, values in draws.items():
        values = torch.tensor(values, dtype=torch.float64)
        se = float(values.std() / math.sqrt(len(values)))
        assert abs(float(values.mean()) - ref[g][1]) <= 4 * se + 1e-9 * ref[g][1], g
    # the head is counted in closed form: no noise at all
    assert len(set(draws["head"])) == 1


class Affine(nn.Module):
    """``x * a + b``: no norm rule, so it is measured by module replay, parameter by parameter."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.linspace(0.5, 1.5, d))
        self.b = nn.Parameter(torch.linspace(-0.2, 0.3, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x * self.a + self.b)


def test_a_replayed_module_can_be_split_but_a_ruled_one_cannot():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), Affine(5), nn.Linear(5, 3)).double()
    x, y = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    groups = {"scale": ["1.a"], "shift": ["1.b"], "linears": ["0.weight", "0.bias", "2.weight", "2.bias"]}
    got = measure(model, mse, (x, y), hutchinson=None, groups=groups)
    ref = group_reference(model, mse, (x, y), None, groups)
    for g, (delta, jsq, _, chi_pos) in ref.items():
        assert got.groups[g].delta == pytest.approx(delta, rel=1e-9)
        assert got.groups[g].j_sq == pytest.approx(jsq, rel=1e-9)
        assert got.groups[g].chi_pos == pytest.approx(chi_pos, rel=1e-8)
    with pytest.raises(ValueError, match=r"split module '0'.*put all of its parameters in one group"):
        measure(model, mse, (x, y), hutchinson=None, groups={"w": ["0.weight"], "b": ["0.bias"]})


def test_bad_groups_are_refused_naming_the_parameter():
    model, loss_fn, batch, _ = cases(torch.float64)["embed_linear"]
    with pytest.raises(ValueError, match=r"'hidden.weigth'.*did you mean hidden.weight"):
        measure(model, loss_fn, batch, groups={"h": ["hidden.weigth"]})
    with pytest.raises(ValueError, match=r"'head.bias' is in groups 'a' and 'b'"):
        measure(model, loss_fn, batch, groups={"a": ["head.bias"], "b": ["head.bias"]})
    model.emb.weight.requires_grad_(False)
    with pytest.raises(ValueError, match=r"'emb.weight', which is frozen"):
        measure(model, loss_fn, batch, groups={"e": ["emb.weight"]})


def test_a_wrapped_model_takes_its_inner_names():
    torch.manual_seed(0)
    lm = tiny_llama()
    ids = torch.randint(0, 32, (2, 6))
    loss_fn = cases(torch.float32)["llama"][1]
    rec = measure(lm, loss_fn, (ids, ids), hutchinson=None, groups={"head": ["lm_head.weight"]})
    assert list(rec.groups) == ["head", REST]
    outer = measure(lm, loss_fn, (ids, ids), hutchinson=None, groups={"head": ["model.lm_head.weight"]})
    assert rec.groups["head"] == outer.groups["head"]


# --- the optimizer's own step ---------------------------------------------------------------


def _applied_update(model, optimizer, lr):
    """Take ``optimizer``'s step; return ``(theta_before - theta_after) / lr`` and put theta back."""
    params = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    optimizer.step()
    update = [(b - p.detach()) / lr for b, p in zip(before, params)]
    with torch.no_grad():
        for p, b in zip(params, before):
            p.copy_(b)
    return update


@pytest.mark.parametrize("variant", ["self", "cross"])
def test_plain_sgd_moves_the_loss_as_gradient_descent_does(variant):
    model, loss_fn, batch, other = cases(torch.float64)["embed_linear"]
    other = None if variant == "self" else other
    loss_fn(model(batch[0]), batch[1]).backward()
    update = _applied_update(model, torch.optim.SGD(model.parameters(), lr=0.1), 0.1)
    rec = measure(model, loss_fn, batch, other, hutchinson=None, update=update)
    assert rec.delta_update == pytest.approx(rec.delta, rel=1e-12)
    assert math.isnan(measure(model, loss_fn, batch, other, hutchinson=None).delta_update)


def test_adamw_update_equals_the_dot_product_with_the_update_formed_by_hand():
    model, loss_fn, batch, other = cases(torch.float64)["llama"]
    lr, (b1, b2), eps, wd = 1e-2, (0.9, 0.95), 1e-8, 0.1
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss_fn(model(batch[0]), batch[1]), params)
    for p, g in zip(params, grads):
        p.grad = g.clone()
    opt = torch.optim.AdamW(params, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    update = _applied_update(model, opt, lr)
    # AdamW's first step: decoupled decay, then m_hat / (sqrt(v_hat) + eps) with m_hat = g, v_hat = g^2
    by_hand = [wd * p.detach() + g / (g.abs() + eps) for p, g in zip(params, grads)]
    measured_grad = torch.autograd.grad(loss_fn(model(other[0]), other[1]), params)
    want = sum(float((a * b).sum()) for a, b in zip(measured_grad, by_hand))
    rec = measure(model, loss_fn, batch, other, hutchinson=None, train_grad=grads, update=update)
    assert rec.delta_update == pytest.approx(want, rel=1e-9)
    assert rec.delta_update != pytest.approx(rec.delta, rel=1e-2)  # preconditioning changes it
    with pytest.raises(ValueError, match="update must hold one tensor per trainable parameter"):
        measure(model, loss_fn, batch, other, hutchinson=None, update=update[:-1])

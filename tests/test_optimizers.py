"""The intervention axes of a language-model run: optimizers (SGD, Muon with AdamW), initialisations
(Xavier, He) and the warmup-stable-decay schedule, against their formulas."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from models import tiny_llama
from torch.optim._muon import _zeropower_via_newtonschulz

from spectral_reach.models.init import reinit
from spectral_reach.train.optimizers import Combined, build
from spectral_reach.train.schedule import lr_factor

CPU = torch.device("cpu")


def spec(**optimizer) -> SimpleNamespace:
    return SimpleNamespace(optimizer=optimizer or None, lr=0.05, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8)


def one_step(model, optimizer, seed=0):
    ids = torch.randint(32, (2, 6), generator=torch.Generator().manual_seed(seed))
    logits = model(ids)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids.flatten()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    optimizer.step()
    optimizer.zero_grad()
    return grads


def test_sgd_takes_the_heavy_ball_step_with_coupled_decay():
    torch.manual_seed(0)
    model = tiny_llama()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = one_step(model, build(model, spec(name="sgd", momentum=0.9), CPU))
    for n, p in model.named_parameters():  # the first step: m = g + wd theta
        torch.testing.assert_close(p.detach(), before[n] - 0.05 * (grads[n] + 0.1 * before[n]))


def test_muon_orthogonalises_the_hidden_matrices_and_adamw_steps_the_rest():
    torch.manual_seed(0)
    model = tiny_llama()
    opt = build(model, spec(name="muon", momentum=0.95), CPU)
    assert isinstance(opt, Combined)
    muon, adamw = opt.optimizers
    by_id = {id(p): n for n, p in model.named_parameters()}
    under_muon = {by_id[id(p)] for g in muon.param_groups for p in g["params"]}
    assert under_muon == {
        n for n, p in model.named_parameters() if p.ndim == 2 and "embed" not in n and "lm_head" not in n
    }
    assert {by_id[id(p)] for g in adamw.param_groups for p in g["params"]} == set(by_id.values()) - under_muon
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = one_step(model, opt)
    name = "model.model.layers.0.mlp.up_proj.weight"  # 24 x 16
    w, g, m = model.get_parameter(name).detach(), grads[name].double(), 0.95
    # Nesterov momentum's first step g (1 - m^2), torch's Newton-Schulz iteration (bfloat16, Muon's
    # coefficients, 5 steps), then AdamW's update RMS: 0.2 sqrt(max(A, B)) lr, decoupled decay
    ortho = _zeropower_via_newtonschulz(g * (1 - m**2), (3.4445, -4.7750, 2.0315), 5, 1e-7).double()
    want = before[name].double() * (1 - 0.05 * 0.1) - 0.05 * 0.2 * math.sqrt(24) * ortho
    torch.testing.assert_close(w.double(), want, rtol=1e-5, atol=1e-7)
    svd = torch.linalg.svdvals(ortho)  # orthogonalised: the large singular values pulled near 1
    assert float(svd.max()) < 1.3 and float((svd > 0.6).float().mean()) > 0.5
    # and AdamW took the rest: the embedding's first step is lr (sign(g) + wd theta)
    emb = "model.model.embed_tokens.weight"
    e_g = grads[emb]
    e_want = before[emb] * (1 - 0.05 * 0.1) - 0.05 * e_g / (e_g.abs() + 1e-8)
    torch.testing.assert_close(model.get_parameter(emb).detach(), e_want, rtol=1e-5, atol=1e-6)


def test_a_combined_optimizer_resumes_from_its_state_dict_exactly():
    torch.manual_seed(0)
    a = tiny_llama()
    b = copy.deepcopy(a)
    opt_a = build(a, spec(name="muon", momentum=0.95), CPU)
    sched_a = torch.optim.lr_scheduler.LambdaLR(opt_a, lambda s: 0.5**s)
    for seed in range(4):
        one_step(a, opt_a, seed)
        sched_a.step()
    opt_b = build(b, spec(name="muon", momentum=0.95), CPU)
    sched_b = torch.optim.lr_scheduler.LambdaLR(opt_b, lambda s: 0.5**s)
    for seed in range(2):
        one_step(b, opt_b, seed)
        sched_b.step()
    saved, sched_saved, weights = copy.deepcopy(opt_b.state_dict()), sched_b.state_dict(), copy.deepcopy(b.state_dict())
    c = tiny_llama()
    c.load_state_dict(weights)
    opt_c = build(c, spec(name="muon", momentum=0.95), CPU)
    sched_c = torch.optim.lr_scheduler.LambdaLR(opt_c, lambda s: 0.5**s)
    opt_c.load_state_dict(saved)
    sched_c.load_state_dict(sched_saved)
    for seed in range(2, 4):
        one_step(c, opt_c, seed)
        sched_c.step()
    for (n, p), q in zip(a.named_parameters(), c.parameters()):
        assert torch.equal(p, q), n


@pytest.mark.parametrize(
    "init,std", [("xavier", lambda i, o: math.sqrt(2 / (i + o))), ("he", lambda i, o: math.sqrt(2 / i))]
)
def test_initialisations_draw_linear_weights_at_their_scale(init, std):
    torch.manual_seed(0)
    model = tiny_llama(d=64, ff=256)
    emb = model.model.model.embed_tokens.weight.detach().clone()
    rng = torch.random.get_rng_state()
    reinit(model, init, seed=3)
    assert torch.equal(torch.random.get_rng_state(), rng)  # the global generator is untouched
    assert torch.equal(model.model.model.embed_tokens.weight, emb)  # the embedding keeps its own
    w = model.model.model.layers[0].mlp.up_proj.weight  # 256 x 64
    assert float(w.std()) == pytest.approx(std(64, 256), rel=0.05)
    again = reinit(tiny_llama(d=64, ff=256), init, seed=3)
    assert torch.equal(again.model.model.layers[0].mlp.up_proj.weight, w)  # the seed fixes it
    with pytest.raises(ValueError, match="init 'lecun' is not one of"):
        reinit(model, "lecun", 0)


def test_warmup_stable_decay():
    f = [lr_factor(s, 10, 100, "wsd", 0.2) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == 1.0 and f[79] == 1.0
    assert f[80] == pytest.approx(1.0) and f[90] == pytest.approx(0.5) and f[99] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="wsd needs decay_fraction"):
        lr_factor(50, 10, 100, "wsd")

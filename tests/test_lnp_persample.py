"""Per-sample squared norms of every layer rule against torch.func per-sample gradients."""

import subprocess
import sys

import pytest
import torch
from models import EmbedLinear, tiny_llama
from torch import nn
from torch.func import functional_call, grad, vmap
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from spectral_reach.lnp import PerSampleNorms
from spectral_reach.lnp.rules import LinearRule, LlamaRMSNormRule, linear_strategy


def vmap_sq_norms(model: nn.Module, inputs: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``||d(v_i . f_i)/dtheta||^2`` per sample from torch.func per-sample gradients."""
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}

    def s(p, x, vi):
        return (functional_call(model, p, (x.unsqueeze(0),)).squeeze(0) * vi).sum()

    per_sample = vmap(grad(s), in_dims=(None, 0, 0))(params, inputs, v)
    return sum(g.reshape(g.shape[0], -1).pow(2).sum(1) for g in per_sample.values())


def hook_sq_norms(model, inputs, v, rules=None):
    with PerSampleNorms(model, rules or {}) as norms:
        with norms.forward(inputs.shape[0]):
            out = model(inputs)
        return norms.jvp_sq_norms(out, v).sum(1)


def only_trainable(model: nn.Module, kind: type) -> nn.Module:
    for m in model.modules():
        for p in m.parameters(recurse=False):
            p.requires_grad_(isinstance(m, kind))
    return model


LLAMA_LAYERS = {
    "embedding": (nn.Embedding, {}),
    "linear_gram": (nn.Linear, {nn.Linear: LinearRule("gram")}),
    "linear_materialise": (nn.Linear, {nn.Linear: LinearRule("materialise")}),
    "llama_rmsnorm": (LlamaRMSNorm, {}),
}


@pytest.mark.parametrize("layer", list(LLAMA_LAYERS))
def test_llama_layer_rules_match_vmap(layer):
    kind, rules = LLAMA_LAYERS[layer]
    torch.manual_seed(1)
    model = only_trainable(tiny_llama().double(), kind)
    with torch.no_grad():  # non-trivial norm weights, so the RMSNorm rule is tested off its init
        for m in model.modules():
            if isinstance(m, LlamaRMSNorm):
                m.weight.uniform_(0.5, 1.5)
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 32, (3, 8), generator=g)
    v = torch.randn(3, 8, 32, generator=g, dtype=torch.float64)
    got = hook_sq_norms(model, ids, v, rules)
    want = vmap_sq_norms(model, ids, v)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=0)


def test_llama_rmsnorm_rule_is_found_without_the_package_importing_transformers():
    with PerSampleNorms(tiny_llama(), {}) as norms:
        found = {type(norms._rule(m)) for m in norms.model.modules() if isinstance(m, LlamaRMSNorm)}
    assert found == {LlamaRMSNormRule}
    code = "import sys, spectral_reach.lnp, spectral_reach.rfm; print(sorted(m for m in sys.modules if m.startswith('transformers')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_whole_llama_matches_vmap_in_fp32():
    torch.manual_seed(3)
    model = tiny_llama()
    g = torch.Generator().manual_seed(4)
    ids = torch.randint(0, 32, (4, 8), generator=g)
    v = torch.randint(0, 2, (4, 8, 32), generator=g).float() * 2 - 1
    torch.testing.assert_close(hook_sq_norms(model, ids, v), vmap_sq_norms(model, ids, v).double(), rtol=1e-4, atol=0)


@pytest.mark.parametrize("kind", [nn.Embedding, nn.LayerNorm, nn.RMSNorm, nn.Linear])
def test_embedding_and_norm_layers_match_vmap(kind):
    torch.manual_seed(5)
    model = only_trainable(EmbedLinear().double(), kind)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.LayerNorm, nn.RMSNorm)):
                m.weight.uniform_(0.5, 1.5)
    g = torch.Generator().manual_seed(6)
    ids = torch.randint(0, 11, (4, 9), generator=g)
    ids[0, :3] = 0  # padding positions: their embedding row gets no gradient
    ids[1, :] = 4  # one row repeated: its contributions add before the norm
    v = torch.randn(4, 9, 7, generator=g, dtype=torch.float64)
    torch.testing.assert_close(hook_sq_norms(model, ids, v), vmap_sq_norms(model, ids, v), rtol=1e-10, atol=1e-14)


def test_opacus_fallback_covers_a_layer_we_have_no_rule_for():
    """A Conv1d (Opacus grad sampler) inside a model: still exact."""
    torch.manual_seed(7)
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.Flatten(), nn.Linear(3 * 4, 2)).double()
    x = torch.randn(5, 2, 6, dtype=torch.float64)
    v = torch.randn(5, 2, dtype=torch.float64)
    with PerSampleNorms(model) as norms:
        with norms.forward(x.shape[0]):
            norms.plan(model(x))
        assert dict(norms.covered)["0"] == "OpacusSamplerRule"
    torch.testing.assert_close(hook_sq_norms(model, x, v), vmap_sq_norms(model, x, v), rtol=1e-10, atol=0)


def test_linear_strategy_picks_fewer_flops():
    # CIFAR shape, T = 1024 > d_in: the T x T Gram costs more than the d_out x d_in gradient
    assert linear_strategy(1024, 64, 64, passes=4) == "materialise"
    # short sequences into a wide layer: the Gram form is cheaper
    assert linear_strategy(8, 96, 4096, passes=4) == "gram"
    # no sequence axis: both forms agree, Gram is the cheap outer product
    assert linear_strategy(1, 16, 16, passes=1) == "gram"


def test_batchnorm_in_eval_mode_matches_vmap():
    torch.manual_seed(8)
    model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.BatchNorm1d(3), nn.Flatten(), nn.Linear(12, 2)).double()
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
        model[1].weight.uniform_(0.5, 1.5)
    model.eval()
    x = torch.randn(5, 2, 6, dtype=torch.float64)
    v = torch.randn(5, 2, dtype=torch.float64)
    torch.testing.assert_close(hook_sq_norms(model, x, v), vmap_sq_norms(model, x, v), rtol=1e-10, atol=0)


def test_plan_is_verified_once_per_model_through_fresh_wrappers(monkeypatch):
    """``measure(LogitsOnly(model), ...)`` at every step: the one-sample check of the plan runs on
    the first measurement of each batch shape only; a second model is checked again. Each
    backward pass of the per-sample machinery is counted: per side one check + K probes."""
    from spectral_reach.lnp import LogitsOnly, measure

    passes = []
    real = PerSampleNorms._grads
    monkeypatch.setattr(PerSampleNorms, "_grads", lambda self, *a, **k: passes.append(1) or real(self, *a, **k))
    g = torch.Generator().manual_seed(0)
    batch = (torch.randint(0, 32, (3, 8), generator=g), torch.randint(0, 32, (3, 8), generator=g))
    other = (torch.randint(0, 32, (2, 8), generator=g), torch.randint(0, 32, (2, 8), generator=g))

    def loss(f, y):
        return nn.functional.cross_entropy(f.reshape(-1, f.shape[-1]), y.reshape(-1))

    torch.manual_seed(0)
    first, second = tiny_llama().model, tiny_llama().model
    counts, records = [], []
    for model in (first, first, second):
        passes.clear()
        records.append(measure(LogitsOnly(model), loss, batch, other, hutchinson=2))
        counts.append(len(passes))
    assert counts == [2 * (1 + 2), 2 * 2, 2 * (1 + 2)]
    assert records[1] == records[0]  # the check changes no number

"""``measure`` in its exact mode against the explicit eNTK (torch.func Jacobians)."""

import pytest
import torch
from models import cases

from spectral_reach.lnp import measure
from spectral_reach.lnp.ntk import entk, jacobian, output_gradient, reference_lnp, spectrum

TOLERANCE = {torch.float64: 1e-8, torch.float32: 1e-4}
#: transformers' LlamaRMSNorm computes in fp32 even in an fp64 model, so the gradient that
#: autograd forms and the reference's J^T g differ by fp32 rounding there (2e-8 seen); delta is
#: also checked against autograd's own gradient to 1e-12 below.
FP32_ISLANDS = {"llama": 1e-7}
CASES = ["mse_mlp", "classifier", "embed_linear", "llama"]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("variant", ["self", "cross"])
@pytest.mark.parametrize("name", CASES)
def test_exact_mode_equals_explicit_entk(name, variant, dtype):
    model, loss_fn, batch, other = cases(dtype)[name]
    other = None if variant == "self" else other
    got = measure(model, loss_fn, batch, other, hutchinson=None)
    ref = reference_lnp(model, loss_fn, batch, other)
    rtol = TOLERANCE[dtype]
    assert got.variant == variant
    grads = [torch.autograd.grad(loss_fn(model(x), y), list(model.parameters())) for x, y in [batch, other or batch]]
    autograd_delta = sum(float((a.double() * b.double()).sum()) for a, b in zip(*grads))
    assert got.delta == pytest.approx(autograd_delta, rel=1e-12 if dtype == torch.float64 else 1e-5)
    delta_rtol = max(rtol, FP32_ISLANDS.get(name, 0.0)) if dtype == torch.float64 else rtol
    assert got.delta == pytest.approx(ref.delta, rel=delta_rtol, abs=1e-12)
    assert got.chi_loss_raw == pytest.approx(ref.chi_loss_raw, rel=rtol)
    assert got.chi_net_raw == pytest.approx(ref.chi_net_raw, rel=rtol)
    assert got.chi_pos == pytest.approx(ref.chi_pos, rel=rtol * 10, abs=1e-10)
    # the normalised pair keeps the product, so chi_pos is convention-free
    assert got.chi_loss * got.chi_net == pytest.approx(got.chi_loss_raw * got.chi_net_raw, rel=1e-12)


@pytest.mark.parametrize("name", CASES)
def test_ratio_equals_eigendecomposition(name):
    model, loss_fn, (inputs, targets), _ = cases(torch.float64)[name]
    j = jacobian(model, inputs)
    with torch.no_grad():
        outputs = model(inputs)
    g = output_gradient(loss_fn, outputs, targets)
    eig = spectrum(entk(j, j), g)
    got = measure(model, loss_fn, (inputs, targets), hutchinson=None)
    assert got.chi_pos == pytest.approx(eig.chi_pos, rel=1e-8)
    assert 0.0 <= got.chi_pos <= 1.0
    assert float(eig.lhat.sum()) == pytest.approx(1.0) and float(eig.chat_sq.sum()) == pytest.approx(1.0)


def test_train_grad_is_reused_not_recomputed():
    model, loss_fn, batch, other = cases(torch.float64)["embed_linear"]
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss_fn(model(batch[0]), batch[1]), params)
    with_grad = measure(model, loss_fn, batch, other, hutchinson=None, train_grad=grads)
    without = measure(model, loss_fn, batch, other, hutchinson=None)
    assert with_grad.delta == pytest.approx(without.delta, rel=1e-12)
    # a different gradient gives a different delta: the passed gradient is what is used
    halved = measure(model, loss_fn, batch, other, hutchinson=None, train_grad=[g / 2 for g in grads])
    assert halved.delta == pytest.approx(without.delta / 2, rel=1e-12)

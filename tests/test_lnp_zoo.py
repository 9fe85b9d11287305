"""LNP on the architectures researchers train: exact against an explicit eNTK, or refused by name.

The reference Jacobian is formed row by row with plain autograd on the model itself
(``ntk.jacobian(method="autograd")``), independent of the hooks, the torch-function recording
and the torch.func replays that ``measure`` uses.
"""

import math

import pytest
import torch
import torch.nn.functional as F
import zoo
from torch import nn

from spectral_reach.lnp import UnsupportedModelError, measure, register_norm_rule
from spectral_reach.lnp.capture import RandomForwardError
from spectral_reach.lnp.ntk import reference_lnp
from spectral_reach.lnp.persample import PerSampleNorms
from spectral_reach.lnp.rules import RULES, EmbeddingRule, LinearRule

#: transformers' RMSNorms compute in fp32 inside fp64 models: autograd's gradient and the reference's
#: J^T g then differ by fp32 rounding (up to 1e-7 seen; 3.8e-7 on llama_mup's cross delta, 0.13 where
#: the two gradients' norms multiply to 16.4: 3e-9 of that); chi_net and delta-vs-autograd stay at 1e-12.
FP32_NORMS = {"llama_tied", "gemma", "mistral_gqa", "qwen3", "peft_prompt_tuning", "llama_mup", "llama_mup_tied"}


def autograd_delta(model, loss_fn, batch, other):
    params = [p for p in model.parameters() if p.requires_grad]
    grads = [torch.autograd.grad(loss_fn(model(x), y), params) for x, y in [batch, other or batch]]
    return sum(float((a * b).sum()) for a, b in zip(*grads))


@pytest.mark.parametrize("variant", ["self", "cross"])
@pytest.mark.parametrize("name", zoo.EXACT)
def test_zoo_is_exact(name, variant):
    model, loss_fn, batch, other = zoo.build(name)
    other = None if variant == "self" else other
    got = measure(model, loss_fn, batch, other, hutchinson=None)
    ref = reference_lnp(model, loss_fn, batch, other, method="autograd")
    assert got.chi_net_raw == pytest.approx(ref.chi_net_raw, rel=1e-8)
    assert got.chi_loss_raw == pytest.approx(ref.chi_loss_raw, rel=1e-10)
    assert got.delta == pytest.approx(autograd_delta(model, loss_fn, batch, other), rel=1e-12)
    rtol = (1e-6 if name.startswith("llama_mup") else 2e-7) if name in FP32_NORMS else 1e-8
    assert got.delta == pytest.approx(ref.delta, rel=rtol)
    assert got.chi_pos == pytest.approx(ref.chi_pos, rel=rtol)


def plan(model, inputs):
    with PerSampleNorms(model) as norms:
        with norms.forward(inputs.shape[0], inputs):
            norms.plan(model(inputs))
        return dict(norms.covered), norms.call_replayed


def test_tied_and_broadcast_parameters_take_their_exact_routes():
    """GPT-2's head is tied to wte (closed form) and its wpe rows are looked up with ids of batch 1."""
    model, _, (ids, _), _ = zoo.build("gpt2")
    covered, replayed = plan(model, ids)
    assert replayed == ["model.transformer.wpe.weight"]
    tied = next(name for name, how in covered.items() if how == "TiedEmbeddingHead")
    assert "'model.transformer.wte'" in tied and "'model.lm_head'" in tied
    assert covered["model.transformer.h.0.attn.c_attn"] == "module replay"  # Conv1D flattens inside
    assert covered["model.transformer.h.0.ln_1"] == "LayerNormRule"


@pytest.mark.parametrize(
    "name, replayed",
    [("peft_prompt_tuning", ["model.prompt_encoder.default.embedding.weight"]), ("learned_memory", ["mem"])],
)
def test_a_parameter_repeated_over_the_batch_is_replayed_by_its_own_call(name, replayed):
    """Issue 36: peft's virtual tokens (repeated) and a learned memory (expanded) were refused, the
    replay recomputing the whole batch's tensor beside one sample's activations. The repeating
    call is now replayed for sample i on row i: exact (test_zoo_is_exact), and not by replaying
    the whole model per sample."""
    model, _, (ids, _), _ = zoo.build(name)
    covered, got = plan(model, ids)
    assert got == replayed
    assert "module replay" not in {how for n, how in covered.items() if n in ("model", "")}


@pytest.mark.parametrize("name", ["gpt2", "llama_tied", "functional_reuse"])
def test_hutchinson_is_unbiased_on_shared_parameters(name):
    model, loss_fn, batch, _ = zoo.build(name)
    exact = measure(model, loss_fn, batch, hutchinson=None).j_sq
    draws = measure(model, loss_fn, batch, hutchinson=48, generator=torch.Generator().manual_seed(3)).j_sq_draws
    mean, sd = sum(draws) / len(draws), torch.tensor(draws).std().item() / math.sqrt(len(draws))
    assert abs(mean - exact) < 4 * sd
    assert sd > 0 or mean == pytest.approx(exact, rel=1e-10)


REFUSED = {
    "gru_final_state": r"module 'rnn' \(GRU\).*opacus\.layers\.DPGRU",
    "lstm_final_state": r"module 'rnn' \(LSTM\).*opacus\.layers\.DPLSTM",
    "sequence_first": r"call 'linear' in module 'a' applies parameters a\.bias, a\.weight.*sequence-first",
    "encoder_layer_seq_first": r"multi_head_attention_forward' in module 'layer\.self_attn'.*sequence-first",
    "opt": r"final_layer_norm.*tokens of all samples flattened into one dimension \(shape \(18, \d+\): 18 = 3 x 6 rows",
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_zoo_refusals_name_the_module_and_the_fix(name):
    model, loss_fn, batch, _ = zoo.build(name)
    with pytest.raises(UnsupportedModelError, match=REFUSED[name]):
        measure(model, loss_fn, batch, hutchinson=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", ["mixtral", "qwen2_moe"])
def test_mixture_of_experts_is_refused_naming_the_router(name, dtype):
    """Refused by structure before a forward pass (in bf16 these tiny experts' grouped matmul
    would itself fail), naming the block, its router and the fix."""
    model, loss_fn, batch, _ = zoo.build(name)
    block = "model.model.layers.0.mlp"
    router = rf"router '{block}\.gate' \((Mixtral|Qwen2Moe)TopKRouter\)"
    with pytest.raises(UnsupportedModelError, match=rf"module '{block}' .*mixture-of-experts.*{router}.*Freeze"):
        measure(model.to(dtype), loss_fn, batch, hutchinson=1)


@pytest.mark.parametrize("name", ["mixtral", "qwen2_moe"])
def test_mixture_of_experts_frozen_the_rest_is_exact(name):
    """The refusal's fix works: with the MoE blocks frozen (eager experts, which take fp64)."""
    config_cls, model_cls, settings = zoo.CAUSAL_LMS[name]
    config = config_cls(**settings)
    config._experts_implementation = "eager"
    torch.manual_seed(0)
    model, loss_fn, batch, _ = zoo._lm(model_cls(config))
    for layer in model.model.model.layers:
        layer.mlp.requires_grad_(False)
    got = measure(model, loss_fn, batch, hutchinson=None)
    ref = reference_lnp(model, loss_fn, batch, method="autograd")
    assert got.chi_net_raw == pytest.approx(ref.chi_net_raw, rel=1e-8)
    assert got.chi_pos == pytest.approx(ref.chi_pos, rel=2e-7)  # fp32 RMSNorms inside (FP32_NORMS)


def test_sequence_first_with_as_many_positions_as_samples_is_caught():
    """(T, b, d) with T == b looks batch-first by shape; the sample-0 probe finds it out."""
    model, loss_fn, _, _ = zoo.build("sequence_first")
    x = torch.randn(4, 4, 4, dtype=torch.float64)
    with pytest.raises(UnsupportedModelError, match="gradient of sample 0 reaches other samples"):
        measure(model, loss_fn, (x, torch.randint(0, 3, (4,))), hutchinson=1)


def test_dprnn_layers_are_exact():
    from opacus.layers import DPGRU, DPLSTM

    for cell in (DPGRU, DPLSTM):
        torch.manual_seed(0)
        model, loss_fn, batch, other = zoo._classifier(zoo.RNNHead(cell), zoo._seq)
        got = measure(model, loss_fn, batch, other, hutchinson=None)
        ref = reference_lnp(model, loss_fn, batch, other, method="autograd")
        assert got.chi_net_raw == pytest.approx(ref.chi_net_raw, rel=1e-8), cell.__name__
        assert got.chi_pos == pytest.approx(ref.chi_pos, rel=1e-8), cell.__name__


@pytest.fixture
def registered():
    saved = dict(RULES)
    yield register_norm_rule
    RULES.clear()
    RULES.update(saved)


def test_a_rule_registered_for_a_scaled_embedding_still_measures_it_exactly(registered):
    """Gemma's embedding multiplies by sqrt(d) after the lookup: the rule would miss the scale."""
    model, loss_fn, batch, other = zoo.build("gemma")
    registered(type(model.model.model.embed_tokens), EmbeddingRule())
    got = measure(model, loss_fn, batch, other, hutchinson=None)
    ref = reference_lnp(model, loss_fn, batch, other, method="autograd")
    assert got.chi_net_raw == pytest.approx(ref.chi_net_raw, rel=1e-8)


class HalfLinearRule(LinearRule):
    def sq_norms(self, module, ctx, backprops):
        return super().sq_norms(module, ctx, backprops) / 2


class MyLinear(nn.Linear):
    pass


def test_a_wrong_rule_is_caught_by_the_one_sample_check(registered):
    registered(MyLinear, HalfLinearRule())
    model = nn.Sequential(MyLinear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    batch = (torch.randn(3, 5, dtype=torch.float64), torch.randint(0, 3, (3,)))
    with pytest.raises(UnsupportedModelError, match=r"'0' \(HalfLinearRule\).*differs from autograd"):
        measure(model, nn.CrossEntropyLoss(), batch)


def test_inplace_relu_after_batchnorm_is_exact():
    model, loss_fn, batch, _ = zoo.build("conv_bn_relu")
    assert isinstance(model[2], nn.ReLU) and model[2].inplace
    got = measure(model, loss_fn, batch, hutchinson=None)
    assert got.chi_net_raw == pytest.approx(reference_lnp(model, loss_fn, batch).chi_net_raw, rel=1e-10)


# --- loss units: what the loss averages over, however it is written ------------------------------


def units(loss_fn, outputs, targets):
    return measure(_Echo(outputs), loss_fn, (torch.zeros(outputs.shape[0], 1), targets), hutchinson=1).n_units


class _Echo(nn.Module):
    """Outputs a fixed tensor plus a trainable offset, so any output shape can be measured."""

    def __init__(self, outputs: torch.Tensor) -> None:
        super().__init__()
        self.outputs = outputs
        self.bias = nn.Parameter(torch.zeros(outputs.shape[-1], dtype=outputs.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outputs + x.reshape(-1, *[1] * (self.outputs.dim() - 1)) + self.bias


def test_units_skip_ignored_targets_whichever_way_the_loss_is_written():
    g = torch.Generator().manual_seed(0)
    logits, tgt = torch.randn(3, 5, 7, generator=g), torch.randint(0, 7, (3, 5), generator=g)
    tgt[0, :2] = -100
    flat = lambda f, y: F.cross_entropy(f.reshape(-1, f.shape[-1]), y.reshape(-1))  # noqa: E731
    assert units(flat, logits, tgt) == 13  # F.cross_entropy's default ignore_index, through a lambda
    ce = nn.CrossEntropyLoss(ignore_index=3)
    tgt3 = tgt.clamp(min=0)
    assert units(lambda f, y: ce(f.reshape(-1, 7), y.reshape(-1)), logits, tgt3) == int((tgt3 != 3).sum())
    shifted = lambda f, y: F.cross_entropy(f[:, :-1].reshape(-1, 7), y[:, 1:].reshape(-1))  # noqa: E731
    assert units(shifted, logits, tgt.clamp(min=0)) == 3 * 4


def test_units_of_a_float_target_loss_are_elements():
    g = torch.Generator().manual_seed(0)
    out, y = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    assert units(nn.MSELoss(), out, y) == 12
    y[0] = 0.0  # zero targets still count: the loss averages over them
    assert units(nn.MSELoss(), out, y) == 12


def test_every_target_ignored_is_refused():
    logits, tgt = torch.randn(2, 4), torch.full((2,), -100)
    with pytest.raises(ValueError, match="every target of the batch is ignored"):
        units(nn.CrossEntropyLoss(), logits, tgt)


# --- randomness and plain misuse ------------------------------------------------------------------


def test_active_dropout_is_refused_unless_allowed():
    model, loss_fn, batch, _ = zoo.build("gpt2")
    model.train()
    with pytest.raises(RandomForwardError, match=r"dropout \(p=0\.1\) in train mode.*allow_random=True"):
        measure(model, loss_fn, batch)
    a = measure(model, loss_fn, batch, hutchinson=1, allow_random=True)
    b = measure(model, loss_fn, batch, hutchinson=1, allow_random=True)
    assert a.chi_pos != b.chi_pos  # random indeed
    model.eval()
    assert measure(model, loss_fn, batch, hutchinson=1).finite


def test_misuse_gets_our_own_errors():
    model, loss_fn, batch, _ = zoo.build("functional_reuse")
    with torch.no_grad(), pytest.raises(RuntimeError, match="torch.no_grad"):
        measure(model, loss_fn, batch)
    with pytest.raises(ValueError, match="batch is empty"):
        measure(model, loss_fn, (batch[0][:0], batch[1][:0]))
    grads = [torch.zeros_like(p, device="meta") for p in model.parameters()]
    with pytest.raises(ValueError, match=r"train_grad\[0\] is on meta"):
        measure(model, loss_fn, batch, train_grad=grads)
    with pytest.raises(ValueError, match="hutchinson must be a positive int"):
        measure(model, loss_fn, batch, hutchinson=True)

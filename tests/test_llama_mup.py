"""muP for the Llama (issue 39): the coordinate check across widths, the learning rates and inits
muP prescribes, a saved model that loads back as the same function, and a run that trains,
is measured and resumes bitwise. LNP's exactness on it is in the zoo (``llama_mup``)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from test_train import SPEC, assert_same_run, cli, wait_for_hold

from spectral_reach.config_checks import problems
from spectral_reach.lnp.rules import rule_for
from spectral_reach.models import llama, llama_mup
from spectral_reach.train.optimizers import build

MUP = {"base_width": 16, "init_std": 0.02, "output_mult": 1.0}
CPU = torch.device("cpu")


def size(width: int) -> dict:
    return {"layers": 2, "hidden": width, "ff": 3 * width, "heads": 2}  # heads grow as the configs' sizes do


def _activation_scales(mup: dict | None, width: int, steps: int = 4) -> dict[str, float]:
    """Mean |coordinate| of the embedding, each block and the logits after ``steps`` AdamW steps at lr 1e-2."""
    model = llama.build(size(width), 64, 32, seed=0, attn="eager", mup=mup)
    spec = SimpleNamespace(
        optimizer=None, init="mup" if mup else "default", lr=1e-2, weight_decay=0.0, betas=(0.9, 0.95), eps=1e-8
    )
    opt = build(model, spec, CPU)
    ids = torch.randint(64, (16, 33), generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(ids[:, :-1]).logits.flatten(0, 1), ids[:, 1:].flatten()).backward()
        opt.step()
    watched = {"embedding": model.model.embed_tokens, "lm_head": model.lm_head}
    watched |= {f"block{k}": b for k, b in enumerate(model.model.layers)}
    scales = {}
    hooks = [
        m.register_forward_hook(
            lambda m, i, o, n=n: scales.__setitem__(n, (o if isinstance(o, torch.Tensor) else o[0]).abs().mean().item())
        )
        for n, m in watched.items()
    ]
    with torch.no_grad():
        model(ids[:, :-1])
    for h in hooks:
        h.remove()
    return scales


def test_mup_coordinate_check():
    """Measured (widths 32-256, 4 AdamW steps at lr 1e-2): under muP the embedding and both blocks
    spread 1.03x across widths, and the logits (0.119, 0.097, 0.086, 0.078) settle towards a limit,
    each doubling moving them less; in standard parameterization the last block grows 70x and the
    logits 3.4x."""
    widths = (32, 64, 128, 256)
    runs = {name: [_activation_scales(mup, w) for w in widths] for name, mup in (("standard", None), ("mup", MUP))}
    spread = {name: {k: max(r[k] for r in rs) / min(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    assert max(v for k, v in spread["mup"].items() if k != "lm_head") < 1.1, spread["mup"]
    logits = [r["lm_head"] for r in runs["mup"]]
    steps = [abs(math.log(b / a)) for a, b in zip(logits, logits[1:])]
    assert steps == sorted(steps, reverse=True) and spread["mup"]["lm_head"] < 1.6, logits
    assert spread["standard"]["block1"] > 10 and spread["standard"]["lm_head"] > 3, spread["standard"]


def test_mup_inits_and_learning_rates_follow_the_width_multiplier():
    """At width 64 over base 16 (m = 4): hidden matrices drawn at std 0.02 / 2 and stepped at lr / 4;
    the embedding at std 0.02 and lr; the head at zero, fed 1/4 of the norm's output; attention 1/d."""
    model = llama.build(size(64), 512, 32, seed=0, mup=MUP)
    q, emb = model.model.layers[0].self_attn.q_proj.weight, model.model.embed_tokens.weight
    assert float(q.detach().std()) == pytest.approx(0.01, rel=0.05)
    assert float(emb.detach().std()) == pytest.approx(0.02, rel=0.03)
    assert float(model.lm_head.weight.detach().abs().max()) == 0.0
    assert model.model.norm.factor == 0.25 and model.config.mup == {**MUP, "factor": 0.25}
    assert model.model.layers[1].self_attn.scaling == 1 / 32
    assert type(rule_for(llama_mup.ReadoutNorm)) is llama_mup.ReadoutNormRule
    spec = SimpleNamespace(optimizer=None, init="mup", lr=1e-2, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8)
    lr_of = {id(p): g["lr"] for g in build(model, spec, CPU).param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        hidden = p.dim() == 2 and "embed" not in name and "lm_head" not in name
        assert lr_of[id(p)] == pytest.approx(1e-2 / 4 if hidden else 1e-2), name


def test_a_tied_mup_head_is_the_embedding_drawn_as_the_embedding():
    """A tied size (the paper's 3.8M): the head is the embedding's table, not zeroed, at lr (vector-like)."""
    model = llama.build({**size(64), "tied": True}, 512, 32, seed=0, mup=MUP)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert float(model.lm_head.weight.detach().std()) == pytest.approx(0.02, rel=0.03)
    assert model.model.norm.factor == 0.25
    spec = SimpleNamespace(optimizer=None, init="mup", lr=1e-2, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8)
    lr_of = {id(p): g["lr"] for g in build(model, spec, CPU).param_groups for p in g["params"]}
    assert lr_of[id(model.lm_head.weight)] == 1e-2


def test_a_saved_mup_model_loads_back_as_the_same_function(tmp_path):
    model = llama.build(size(32), 64, 16, seed=0, mup=MUP)
    with torch.no_grad():
        model.lm_head.weight.normal_(generator=torch.Generator().manual_seed(0))
    model.save_pretrained(tmp_path)
    loaded = llama.load(tmp_path)
    ids = torch.randint(64, (2, 15), generator=torch.Generator().manual_seed(1))
    assert torch.equal(model(ids).logits, loaded(ids).logits)
    assert isinstance(loaded.model.norm, llama_mup.ReadoutNorm) and loaded.model.norm.factor == 0.5
    plain = llama.build(size(32), 64, 16, seed=0)  # the same weights in a standard model give other logits
    plain.load_state_dict(model.state_dict())
    assert not torch.allclose(plain(ids).logits, model(ids).logits)
    assert set(plain.state_dict()) == set(model.state_dict())  # the same keys: any Llama loader reads the weights


MUP_SPEC = {**SPEC, "init": "mup", "mup": {**MUP, "base_width": 8}}


def test_a_mup_run_trains_is_measured_and_resumes_bitwise(text_data, tmp_path):
    ref = cli(MUP_SPEC, text_data, tmp_path / "ref", tmp_path / "ref_state")
    assert ref.wait() == 0, ref.stdout.read()
    proc = cli(MUP_SPEC, text_data, tmp_path / "run", tmp_path / "state", hold=tmp_path / "held")
    wait_for_hold(tmp_path / "held", proc)
    proc.kill()
    proc.wait()
    rerun = cli(MUP_SPEC, text_data, tmp_path / "run", tmp_path / "state")
    assert rerun.wait() == 0, rerun.stdout.read()
    assert json.loads((tmp_path / "run" / "done.json").read_text())["resumed_at"] == [5]
    assert_same_run(tmp_path / "ref", tmp_path / "run")
    import pandas as pd

    metrics, lnp = pd.read_parquet(tmp_path / "ref/metrics.parquet"), pd.read_parquet(tmp_path / "ref/lnp.parquet")
    assert metrics["loss"].tail(5).mean() < metrics["loss"].head(5).mean() - 0.1
    assert lnp[["chi_pos", "chi_net", "delta_update"]].map(math.isfinite).all().all()
    assert isinstance(llama.load(tmp_path / "ref/model").model.norm, llama_mup.ReadoutNorm)


@pytest.mark.parametrize(
    "variant,message",
    [
        ({"init": "mup"}, "init mup and lm.{d}.variants.v.mup go together"),
        ({"mup": {"base_width": 16}}, "init mup and lm.{d}.variants.v.mup go together"),
        ({"init": "mup", "mup": {"base_width": 16}, "optimizer": "muon", "momentum": 0.95}, "muon has no muP rule"),
    ],
)
def test_a_mup_variant_missing_its_settings_or_with_muon_is_named(variant, message):
    from workflow_run import CI_CONFIG, merged

    d = next(iter(CI_CONFIG["lm"]))
    found = problems(merged(CI_CONFIG, {"lm": {d: {"variants": {"v": variant}}}}))
    assert any(message.format(d=d) in p for p in found), found

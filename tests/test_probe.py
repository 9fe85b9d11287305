"""Linear probes: a frozen backbone's chi_net is constant, the backbone is untouched by training,
and the Eq. 12 ratio with its top-10% filter equals a hand computation."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_train import SPEC

from spectral_reach.analysis import probe
from spectral_reach.figures import caption
from spectral_reach.figures import fig04_probe_ratio as fig04
from spectral_reach.lnp import LogitsOnly, measure
from spectral_reach.models import llama
from spectral_reach.train import RunSpec, lm, lm_loss, train


def test_frozen_backbone_chi_net_is_constant():
    model = llama.build({"layers": 1, "hidden": 16, "ff": 32, "heads": 2}, 40, 16, seed=0)
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("lm_head."))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, 40, (4, 12), generator=g), torch.randint(0, 40, (4, 12), generator=g)
    opt = torch.optim.AdamW([model.lm_head.weight], lr=0.05)
    values = []
    for _ in range(4):
        values.append(measure(LogitsOnly(model), lm_loss, (x, y), hutchinson=2).chi_net)
        lm_loss(model(x).logits, y).backward()
        opt.step()
        opt.zero_grad()
    assert values == pytest.approx([values[0]] * 4, rel=1e-6)
    full = llama.build({"layers": 1, "hidden": 16, "ff": 32, "heads": 2}, 40, 16, seed=0)
    assert measure(LogitsOnly(full), lm_loss, (x, y), hutchinson=2).chi_net > 2 * values[0]


def test_probe_trains_only_the_head(text_data, tmp_path):
    train(RunSpec.from_dict({**SPEC, "steps": 12}), text_data, tmp_path / "lm", tmp_path / "s1")
    train(
        RunSpec.from_dict({**SPEC, "steps": 12, "trainable": "head"}),
        text_data,
        tmp_path / "probe",
        tmp_path / "s2",
        backbone=str(tmp_path / "lm" / "model"),
    )
    backbone, probed = llama.load(tmp_path / "lm" / "model"), llama.load(tmp_path / "probe" / "model")
    head_changed = False
    for (name, p), q in zip(backbone.state_dict().items(), probed.state_dict().values()):
        if name.startswith("lm_head."):
            head_changed = not torch.equal(p, q)
        else:
            assert torch.equal(p, q), name
    assert head_changed
    lnp = pd.read_parquet(tmp_path / "probe" / "lnp.parquet")
    assert lnp["chi_net"].notna().all()
    # The probe's head starts fresh, never as the backbone's trained head (transformers 5 skips
    # initialising loaded weights): its first loss is near-uniform logits' log V, where the trained
    # model's last loss is well below it.
    first = pd.read_parquet(tmp_path / "probe" / "metrics.parquet")["loss"].iloc[0]
    trained = pd.read_parquet(tmp_path / "lm" / "metrics.parquet")["loss"].iloc[-1]
    assert first == pytest.approx(math.log(SPEC["vocab_size"]), abs=0.02) and trained < first - 0.2, (first, trained)


def test_fresh_head_is_one_draw_on_any_backbone(text_data, tmp_path):
    """A probe's head is the same N(0, initializer_range^2) draw on a trained and on a random
    backbone of one seed, untied from a tied embedding."""
    train(RunSpec.from_dict({**SPEC, "steps": 8}), text_data, tmp_path / "lm", tmp_path / "s1")
    trained = llama.load(tmp_path / "lm" / "model")
    kept = trained.lm_head.weight.detach().clone()
    lm.fresh_head(trained, seed=7)
    random = llama.build({**SPEC["size"], "tied": True}, SPEC["vocab_size"], SPEC["context_length"], seed=1)
    lm.fresh_head(random, seed=7)
    assert torch.equal(trained.lm_head.weight, random.lm_head.weight)
    assert not torch.equal(trained.lm_head.weight, kept)
    assert random.lm_head.weight is not random.model.embed_tokens.weight and not random.config.tie_word_embeddings
    assert float(random.lm_head.weight.std()) == pytest.approx(random.config.initializer_range, rel=0.05)


def test_top_fraction_filter_and_ratio_by_hand():
    pre = pd.DataFrame(
        {"step": range(10), "window": [0] * 5 + [1] * 5, "chi_pos": [1.0, 5.0, 3.0, 2.0, 4.0, 0.5, 0.1, 0.9, 0.3, 0.2]}
    )
    rnd = pre.assign(chi_pos=pre["chi_pos"] * 2)
    kept = probe.top_per_window(pre, 0.3)  # ceil(1.5) = 2 per window
    assert kept["chi_pos"].tolist() == [5.0, 4.0, 0.5, 0.9]
    out = probe.ratio(pre, rnd, steps=10, fraction=0.3, windows=[(0.0, 0.5), (0.5, 1.0), (0.0, 1.0)])
    assert out["chi_pos_pretrained"].tolist() == pytest.approx([4.5, 0.7, 2.6])
    assert out["ratio"].tolist() == pytest.approx([0.5, 0.5, 0.5])


def test_ratio_of_a_non_positive_mean_is_undefined_and_the_caption_says_so(tmp_path):
    """Cross-variant chi_pos can be negative: a ratio with a negative mean is NaN with a note, never
    a negative number drawn on a log axis, and Fig. 4's caption counts it as undefined."""
    pre = pd.DataFrame({"step": range(4), "window": [0, 0, 1, 1], "chi_pos": [2.0, 1.0, 3.0, 1.0]})
    rnd = pre.assign(chi_pos=[4.0, 1.0, -2.0, -5.0])
    out = probe.ratio(pre, rnd, steps=4, fraction=0.5, windows=[(0.0, 0.5), (0.5, 1.0)])
    assert out["ratio"].iloc[0] == pytest.approx(0.5) and out["note"].iloc[0] == ""
    assert math.isnan(out["ratio"].iloc[1]) and "mean chi_pos(random) = -2" in out["note"].iloc[1]
    ratios = pd.concat([out.assign(size=s, seed=0, params=p) for s, p in (("s", 10), ("m", 20))])
    ratios.loc[(ratios["size"] == "m") & (ratios["t0"] == 0.5), "ratio"] = 2.0
    ((early, late),) = [d["windows"] for d in fig04.caption_values({"twin": ratios})["datasets"]]
    assert early["below"] and early["undefined"] == 0
    assert late["undefined"] == 1 and not late["below"] and math.isnan(late["ratio"][0])
    template = Path(__file__).resolve().parents[1] / "workflow/report/fig04.rst"
    caption.render(template, tmp_path / "fig04.rst", fig04.caption_values({"twin": ratios}))
    text = (tmp_path / "fig04.rst").read_text()
    assert (
        "0.5 / 0.5 (below 1 at every size)" in text
        and "nan / 2 (not below 1 at every size with a ratio; at 1 size" in text
    )


def test_probe_on_a_tied_backbone_trains_a_fresh_untied_head(text_data, tmp_path):
    """The paper's 3.8M row is tied; its probe's head must not move the frozen embedding."""
    tied = {**SPEC, "size": {**SPEC["size"], "tied": True}, "steps": 12}
    train(RunSpec.from_dict(tied), text_data, tmp_path / "lm", tmp_path / "s1")
    backbone = llama.load(tmp_path / "lm" / "model")
    assert backbone.lm_head.weight is backbone.model.embed_tokens.weight
    train(
        RunSpec.from_dict({**tied, "trainable": "head"}),
        text_data,
        tmp_path / "probe",
        tmp_path / "s2",
        backbone=str(tmp_path / "lm" / "model"),
    )
    probed = llama.load(tmp_path / "probe" / "model")
    assert not probed.config.tie_word_embeddings
    assert torch.equal(probed.model.embed_tokens.weight, backbone.model.embed_tokens.weight)
    assert not torch.equal(probed.lm_head.weight, probed.model.embed_tokens.weight)
    lnp = pd.read_parquet(tmp_path / "probe" / "lnp.parquet")
    assert lnp["chi_net"].notna().all() and (lnp["chi_pos"].abs() <= 1).all()


def test_a_probe_step_does_no_backward_work_in_the_backbone():
    """The backward graph of a probe's loss reaches the head and nothing else: every node that
    accumulates a gradient is the head's weight, and no node belongs to a backbone layer."""
    from spectral_reach.train import lm as lm_train

    spec = RunSpec.from_dict({**SPEC, "trainable": "head"})
    model = lm_train._model(spec, None)
    x = torch.randint(0, SPEC["vocab_size"], (2, SPEC["context_length"] - 1))
    nodes = list(_graph(lm_loss(model(x).logits, x)))
    leaves = [node.variable for node in nodes if hasattr(node, "variable")]
    assert len(leaves) == 1 and leaves[0] is model.lm_head.weight
    full = lm_loss(llama.build(SPEC["size"], SPEC["vocab_size"], SPEC["context_length"], 0)(x).logits, x)
    assert len(nodes) < 10 < len(list(_graph(full)))  # the head's matmul and the loss, against a whole Llama


def _graph(loss: torch.Tensor):
    seen, todo = set(), [loss.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        yield node
        todo += [next_fn for next_fn, _ in node.next_functions]

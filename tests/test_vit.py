"""Vision transformers (standard and muP): Tables 3-4 parameter counts, LNP against the explicit
eNTK, the muP coordinate check, and a short training run with resume."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from spectral_reach.analysis.lm import label_params
from spectral_reach.data import DataError
from spectral_reach.lnp import LogitsOnly, measure
from spectral_reach.lnp.ntk import reference_lnp
from spectral_reach.models import vit
from spectral_reach.train.vit import ViTSpec, classification_loss, optimizer, train_vit

TABLE_3 = {"546.2K": (128, 256, 4, 4), "1.8M": (192, 768, 4, 4), "9.4M": (360, 1440, 6, 6)}
TABLE_4 = {
    "459.7K": (96, 384, 3, 4),
    "809.4K": (128, 512, 4, 4),
    "1.8M": (192, 768, 6, 4),
    "3.2M": (256, 1024, 8, 4),
    "7.1M": (384, 1536, 12, 4),
}
MUP = {"base_width": 32, "init_std": 0.02, "output_mult": 1.0}


def size(hidden, mlp, heads, layers, patch=4):
    return {"hidden": hidden, "mlp": mlp, "heads": heads, "layers": layers, "patch": patch}


@pytest.mark.parametrize("label,row", [*TABLE_3.items(), *TABLE_4.items()])
def test_parameter_counts_match_tables_3_and_4(label, row):
    counted = vit.count_parameters(size(*row))
    assert counted == pytest.approx(label_params(label), rel=0.01)
    built = sum(p.numel() for p in vit.build(size(*row), 0, "mup", {**MUP, "base_width": 96}).parameters())
    assert built == counted  # muP changes no shape


@pytest.mark.parametrize("parametrization", ["standard", "mup"])
def test_lnp_on_a_tiny_vit_equals_the_explicit_entk(parametrization):
    """Exact sum over the 10 outputs; the patch-embedding Conv2d and the position embeddings go
    through the Opacus fallback, the rest through our rules, the muP readout multiplier included."""
    torch.manual_seed(0)
    model = vit.build(size(16, 32, 2, 2, patch=8), 0, parametrization, {**MUP, "base_width": 8}).double()
    if parametrization == "mup":  # zero-initialised readout: give it weights
        torch.nn.init.normal_(model.classifier[1].weight, std=0.5)
    g = torch.Generator().manual_seed(1)
    batch = (torch.randn(5, 3, 32, 32, generator=g, dtype=torch.float64), torch.randint(0, 10, (5,), generator=g))
    other = (torch.randn(4, 3, 32, 32, generator=g, dtype=torch.float64), torch.randint(0, 10, (4,), generator=g))
    wrapped = LogitsOnly(model)
    got = measure(wrapped, classification_loss, batch, other, hutchinson=None)
    ref = reference_lnp(wrapped, classification_loss, batch, other)
    for key in ("delta", "chi_loss_raw", "chi_net_raw", "chi_pos"):
        assert getattr(got, key) == pytest.approx(getattr(ref, key), rel=1e-8), key


def _activation_scales(parametrization: str, width: int) -> dict[str, float]:
    """Mean |coordinate| of the embeddings, each block and the logits after 4 AdamW steps at lr 1e-2."""
    model = vit.build(size(width, 4 * width, width // 16, 2, patch=8), 0, parametrization, MUP)
    opt = optimizer(model, parametrization, lr=1e-2)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 3, 32, 32, generator=g), torch.randint(0, 10, (32,), generator=g)
    for _ in range(4):
        opt.zero_grad()
        F.cross_entropy(model(x).logits, y).backward()
        opt.step()
    blocks = [m for m in model.modules() if type(m).__name__ == "ViTLayer"]  # named per transformers version
    watched = {
        "embeddings": model.vit.embeddings,
        "classifier": model.classifier,
        **{f"block{k}": b for k, b in enumerate(blocks)},
    }
    scales = {}
    hooks = [
        m.register_forward_hook(
            lambda m, i, o, n=n: scales.__setitem__(
                n, (o if isinstance(o, torch.Tensor) else o[0]).detach().abs().mean().item()
            )
        )
        for n, m in watched.items()
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return scales


def test_mup_coordinate_check():
    """Measured (widths 32-256): muP spreads at most 1.31x across widths in every layer; standard
    parameterization grows 25x in the last block and 4.3x in the logits."""
    widths = (32, 64, 128, 256)
    spread = {}
    for par in ("standard", "mup"):
        runs = [_activation_scales(par, w) for w in widths]
        spread[par] = {k: max(r[k] for r in runs) / min(r[k] for r in runs) for k in runs[0]}
    assert max(spread["mup"].values()) < 1.5, spread["mup"]
    assert spread["standard"]["block1"] > 10 and spread["standard"]["classifier"] > 3, spread["standard"]


SPEC = {
    "size": size(24, 48, 2, 2, patch=8),
    "parametrization": "standard",
    "mup": None,
    "batch_size": 16,
    "steps": 40,
    "passes": 2,
    "lr": 3e-3,
    "seed": 0,
    "data_seed": 0,
    "betas": [0.9, 0.95],
    "eps": 1e-8,
    "weight_decay": 0.01,
    "warmup": 5,
    "schedule": "constant",
    "lnp": {"per_decade": 3, "width": 3, "measure_images": 64, "measure_batch": 8},
    "eval": {"per_decade": 3, "test_images": 64, "batch": 64},
    "checkpoint_every": 15,
    "log_every": 10,
    "device": "cpu",
}


@pytest.mark.parametrize("parametrization", ["standard", "mup"])
def test_short_run_tables_and_resume(image_data, tmp_path, parametrization):
    spec = ViTSpec.from_dict(
        {**SPEC, "parametrization": parametrization, "mup": copy.deepcopy(MUP) if parametrization == "mup" else None}
    )
    whole = train_vit(spec, image_data, tmp_path / "whole", tmp_path / "s1")
    lnp = pd.read_parquet(tmp_path / "whole" / "lnp.parquet")
    metrics = pd.read_parquet(tmp_path / "whole" / "metrics.parquet")
    assert len(metrics) == 40 and metrics["images"].iloc[-1] == 40 * 16 and whole["images"] == 640
    assert (lnp["hutchinson"] == 0).all() and lnp[["chi_pos", "chi_net", "chi_loss"]].notna().all().all()
    assert (lnp["chi_pos"].abs() <= 1).all()  # cross variant: signed, bounded by Cauchy-Schwarz
    assert metrics["loss"].notna().all() and abs(metrics["loss"].iloc[0] - 2.3026) < 0.1  # ln 10 at the start
    # stop after the checkpoint at step 30, then resume: bitwise the same end
    cut = ViTSpec.from_dict(
        {
            **SPEC,
            "parametrization": parametrization,
            "steps": 40,
            "mup": copy.deepcopy(MUP) if parametrization == "mup" else None,
        }
    )
    from spectral_reach.train import loop

    calls = {"n": 0}
    real = loop.checkpoint.save

    def save_then_stop(*args, **kwargs):
        path = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return path

    loop.checkpoint.save = save_then_stop
    try:
        with pytest.raises(KeyboardInterrupt):
            train_vit(cut, image_data, tmp_path / "cut", tmp_path / "s2")
    finally:
        loop.checkpoint.save = real
    resumed = train_vit(cut, image_data, tmp_path / "cut", tmp_path / "s2")
    assert resumed["resumed_at"] == [30]
    again = pd.read_parquet(tmp_path / "cut" / "metrics.parquet")
    assert again["loss"].tolist() == metrics["loss"].tolist()
    assert pd.read_parquet(tmp_path / "cut" / "lnp.parquet")["chi_pos"].tolist() == lnp["chi_pos"].tolist()


@pytest.mark.parametrize(
    "change,message",
    [
        ({"lr": 0}, "lr must be positive"),
        ({"parametrization": "mup"}, "parametrization='mup'"),
        ({"steps": 10_000}, "steps=10000: 2 passes"),
        (
            {"lnp": {**SPEC["lnp"], "measure_images": 10_000}},
            "lnp.measure_images=10000, but .*validation_rgb.bin has only",
        ),
    ],
)
def test_bad_settings_name_the_key(image_data, tmp_path, change, message):
    with pytest.raises((ValueError, DataError), match=message):
        train_vit(ViTSpec.from_dict({**SPEC, **change}), image_data, tmp_path / "o", tmp_path / "s")


def test_hutchinson_option_estimates_the_exact_sum(image_data, tmp_path):
    """``lnp.hutchinson: K`` (the classifier counted exactly, the rest from K probe vectors) against
    the exact sum over the 10 classes, on the same training trajectory: delta and chi_loss equal,
    ``||J||^2`` within the estimator's spread."""
    tables = {}
    for k in (None, 8):
        spec = ViTSpec.from_dict({**SPEC, "steps": 10, "lnp": {**SPEC["lnp"], "hutchinson": k}})
        train_vit(spec, image_data, tmp_path / f"k{k}", tmp_path / f"s{k}")
        tables[k] = pd.read_parquet(tmp_path / f"k{k}" / "lnp.parquet")
    exact, probed = tables[None], tables[8]
    assert (exact["hutchinson"] == 0).all() and (probed["hutchinson"] == 8).all() and len(probed) == len(exact) > 3
    assert np.allclose(probed["delta"], exact["delta"], rtol=1e-6)
    assert np.allclose(probed["chi_loss"], exact["chi_loss"], rtol=1e-6)
    ratio = probed["j_sq"] / exact["j_sq"]
    assert ratio.between(0.75, 1.33).all() and abs(ratio.mean() - 1) < 0.1, ratio.tolist()
    assert not np.allclose(ratio, 1, rtol=1e-9)  # estimated, not the exact sum again

"""CUDA checks (skipped where no GPU is present, e.g. in CI): LNP on the GPU equals LNP on the CPU,
a bf16 (or TF32) measurement stays within 2% of fp32, and a bf16-autocast, compiled training run
with a bf16 measurement keeps its LNP components finite."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from models import cases, seq_ce

from spectral_reach.lnp import measure
from spectral_reach.train import RunSpec, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_measure_on_cuda_equals_cpu():
    torch.backends.cuda.matmul.allow_tf32 = False
    model, loss_fn, batch, mbatch = cases(torch.float32)["llama"]
    cpu = measure(model, loss_fn, batch, mbatch, hutchinson=None)
    gpu_batch = tuple(t.cuda() for t in batch)
    gpu_mbatch = tuple(t.cuda() for t in mbatch)
    gpu = measure(model.cuda(), seq_ce, gpu_batch, gpu_mbatch, hutchinson=None)
    for key in ("delta", "chi_loss", "chi_net", "chi_pos"):
        assert getattr(gpu, key) == pytest.approx(getattr(cpu, key), rel=1e-4), key


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_reduced_precision_measure_on_cuda_within_2_percent(precision):
    """The paper config measures in bf16 on the GPU: components stay within 2% of fp32 (measured: <1.3%)."""
    from spectral_reach.train.device import lnp_precision

    model, loss_fn, batch, mbatch = cases(torch.float32)["llama"]
    model = model.cuda()
    batch, mbatch = (tuple(t.cuda() for t in b) for b in (batch, mbatch))
    runs = {}
    for p in ("fp32", precision):
        with lnp_precision(p, torch.device("cuda")):
            runs[p] = measure(
                model, seq_ce, batch, mbatch, hutchinson=8, generator=torch.Generator("cuda").manual_seed(0)
            )
    for key in ("delta", "chi_loss", "chi_net", "chi_pos"):
        assert getattr(runs[precision], key) == pytest.approx(getattr(runs["fp32"], key), rel=0.02), key


def test_bf16_compiled_training_with_bf16_lnp(text_data, tmp_path):
    from test_train import SPEC

    spec = RunSpec.from_dict(
        {
            **SPEC,
            "steps": 60,
            "device": "cuda",
            "precision": "bf16",
            "compile": True,
            "lnp": {**SPEC["lnp"], "precision": "bf16"},
        }
    )
    summary = train(spec, text_data, tmp_path / "run", tmp_path / "state")
    lnp = pd.read_parquet(tmp_path / "run" / "lnp.parquet")
    metrics = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    assert lnp[["delta", "chi_loss", "chi_net", "chi_pos"]].notna().all().all()
    assert metrics["loss"].iloc[-5:].mean() < metrics["loss"].iloc[:5].mean() - 0.5
    # the measurement's own fp32 loss on B agrees with the bf16 training loss to bf16 precision
    both = lnp.merge(metrics, on="step", suffixes=("_lnp", ""))
    assert (both["loss_lnp"] - both["loss"]).abs().max() < 0.05
    assert summary["final_test_loss"] < metrics["loss"].iloc[0]


def test_compiled_training_measures_what_eager_training_measures(text_data, tmp_path):
    """compile: true (the paper config on CUDA) changes the training step's kernels, not the
    measurement (hooks on the uncompiled module): its LNP rows agree with an eager run's within
    bf16 noise over the first steps, before the two runs' rounding drifts apart."""
    from test_train import SPEC

    tables = {}
    for compiled in (False, True):
        spec = RunSpec.from_dict(
            {
                **SPEC,
                "steps": 20,
                "device": "cuda",
                "precision": "bf16",
                "compile": compiled,
                "lnp": {**SPEC["lnp"], "precision": "bf16"},
            }
        )
        train(spec, text_data, tmp_path / f"run{compiled}", tmp_path / f"state{compiled}")
        tables[compiled] = pd.read_parquet(tmp_path / f"run{compiled}" / "lnp.parquet").set_index("step")
    early = tables[False].index[tables[False].index < 5]
    for key in ("chi_loss", "chi_net", "chi_pos"):
        pd.testing.assert_series_equal(tables[True].loc[early, key], tables[False].loc[early, key], rtol=0.05)


def test_mup_vit_trains_in_bf16_on_cuda(image_data, tmp_path):
    from test_vit import MUP, SPEC

    from spectral_reach.train.vit import ViTSpec, train_vit

    spec = ViTSpec.from_dict(
        {
            **SPEC,
            "device": "cuda",
            "precision": "bf16",
            "parametrization": "mup",
            "mup": MUP,
            "lnp": {**SPEC["lnp"], "precision": "bf16"},
        }
    )
    summary = train_vit(spec, image_data, tmp_path / "run", tmp_path / "state")
    lnp = pd.read_parquet(tmp_path / "run" / "lnp.parquet")
    assert lnp[["delta", "chi_loss", "chi_net", "chi_pos"]].notna().all().all() and summary["images"] == 640

"""The PyTorch Lightning integration: the example runs as written; a measured step's record is the
measurement of the step's whole batch with its own gradient (accumulated, before clipping); the
log-spaced schedule; BatchNorm refused; FSDP2 equal to one process."""

from __future__ import annotations

import os
from pathlib import Path

import lightning.pytorch as pl
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from example_run import example_table

from spectral_reach.lnp import measure as measure_fn
from spectral_reach.lnp import windows
from spectral_reach.lnp.integrations import lightning as lnp_lightning

ROOT = Path(__file__).resolve().parents[1]


def test_the_example_runs_and_writes_its_table(tmp_path):
    table = example_table("lightning_module.py", tmp_path)
    assert table["step"].tolist() == [0, 3, 6, 9, 11]  # every 3 steps, and the final step
    assert (table["n_units"] == 2 * 4 * 16).all() and (table["batch_size"] == 8).all()  # both micro-batches


def loss_fn(logits, targets):
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


class Tiny(pl.LightningModule):
    def __init__(self, norm: torch.nn.Module | None = None):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Embedding(16, 8), norm or torch.nn.Identity(), torch.nn.Linear(8, 16))

    def forward(self, ids):
        return self.net(ids)

    def training_step(self, batch, batch_idx):
        return loss_fn(self(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(tmp_path, module, callback, **trainer_args):
    torch.manual_seed(0)
    ids = torch.randint(16, (64, 6), generator=torch.Generator().manual_seed(0))
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(ids, ids.roll(1, 1)), batch_size=4)
    defaults = dict(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=str(tmp_path), callbacks=[callback],
    )  # fmt: skip
    trainer = pl.Trainer(**{**defaults, **trainer_args})
    trainer.fit(module, data)


def held_out():
    ids = torch.randint(16, (4, 6), generator=torch.Generator().manual_seed(1))
    return ids, ids.roll(1, 1)


def test_the_steps_gradient_is_the_gradient_of_its_whole_batch_before_clipping(tmp_path, monkeypatch):
    pairs = []

    def both(model, loss, batch, other, **kwargs):
        reused = measure_fn(model, loss, batch, other, **kwargs)
        recomputed = measure_fn(model, loss, batch, other, **{**kwargs, "train_grad": None})
        pairs.append((kwargs["train_grad"] is not None, reused, recomputed))
        return reused

    monkeypatch.setattr(lnp_lightning, "measure", both)
    callback = lnp_lightning.LNPCallback(loss_fn, held_out(), tmp_path / "lnp.parquet", every=2, hutchinson=None)
    fit(tmp_path, Tiny(), callback, max_steps=4, accumulate_grad_batches=2, gradient_clip_val=1e-3)
    assert len(pairs) == 3 and all(reused_grad for reused_grad, _, _ in pairs)  # steps 0, 2 and the final 3
    for _, reused, recomputed in pairs:
        assert reused.n_units == recomputed.n_units == 2 * 4 * 6
        assert reused.delta == pytest.approx(recomputed.delta, rel=1e-5)  # not the clipped gradient
        assert reused.chi_pos == pytest.approx(recomputed.chi_pos, rel=1e-5)


def test_the_log_spaced_windows_schedule(tmp_path):
    callback = lnp_lightning.LNPCallback(loss_fn, held_out(), tmp_path / "lnp.parquet", windows=(3, 2), hutchinson=2)
    fit(tmp_path, Tiny(), callback, max_steps=12)
    expected = sorted(windows.step_windows(windows.log_windows(12, 3, 2)))
    assert pd.read_parquet(tmp_path / "lnp.parquet")["step"].tolist() == expected


def test_each_measurement_goes_to_the_loggers_at_its_own_step(tmp_path):
    """Issue 38/39: every measurement reaches TensorBoard at its own step, the final step included, with
    each parameter group's chi_pos (groups) logged and tabled."""
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    groups = {"embedding": ["net.0.weight"], "readout": ["net.2.weight", "net.2.bias"]}
    callback = lnp_lightning.LNPCallback(
        loss_fn, held_out(), tmp_path / "lnp.parquet", every=3, hutchinson=None, groups=groups
    )
    logger = TensorBoardLogger(tmp_path, name="tb", version=0)
    fit(tmp_path, Tiny(), callback, max_steps=8, logger=logger, log_every_n_steps=5)
    table = pd.read_parquet(tmp_path / "lnp.parquet")
    assert table["step"].tolist() == [0, 3, 6, 7]
    events = EventAccumulator(logger.log_dir, size_guidance={"scalars": 0})
    events.Reload()
    tb = [(e.step, e.value) for e in events.Scalars("lnp/chi_pos")]
    assert [s for s, _ in tb] == [0, 3, 6, 7]
    assert [v for _, v in tb] == pytest.approx(table["chi_pos"].tolist(), rel=1e-6)
    parts = pd.read_parquet(tmp_path / "lnp_groups.parquet")
    readout = parts[parts["group"] == "readout"]
    got = [e.value for e in events.Scalars("lnp/readout/chi_pos")]
    assert got == pytest.approx(readout["chi_pos"].tolist(), rel=1e-6)
    sums = parts.groupby("step")["delta"].sum()
    assert sums.tolist() == pytest.approx(table["delta"].tolist(), rel=1e-9)


def test_batchnorm_is_refused(tmp_path):
    class Norm(torch.nn.BatchNorm1d):
        def forward(self, x):
            return super().forward(x.transpose(1, 2)).transpose(1, 2)

    callback = lnp_lightning.LNPCallback(loss_fn, held_out(), tmp_path / "lnp.parquet", every=2)
    with pytest.raises(ValueError, match="BatchNorm, which computes another function in eval mode"):
        fit(tmp_path, Tiny(Norm(8)), callback, max_steps=2)


def test_under_fsdp2_the_callback_measures_what_one_process_measures_on_the_whole_batch(tmp_path):
    """Issue 36: Lightning's FSDP2 (ModelParallelStrategy, ``fully_shard`` in ``configure_model``) on 2
    CPU processes: the sharded run's table equals DDP's exactly and one process's at batch 8 (the
    same global batches) to float32 rounding."""
    import json
    import subprocess
    import sys

    tables = {}
    for mode in ("one", "ddp", "fsdp2"):
        out = tmp_path / mode
        proc = subprocess.run(
            [sys.executable, str(ROOT / "tests/lightning_parallel.py"), mode, str(out)],
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            timeout=600,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        tables[mode] = pd.read_parquet(out / "lnp.parquet")
        kinds = json.loads((out / "kinds.json").read_text())
        assert kinds == (
            {"module": "FSDPSequential", "weight": "DTensor"}
            if mode == "fsdp2"
            else {"module": "Sequential", "weight": "Parameter"}
        )
    assert tables["fsdp2"]["step"].tolist() == [0, 2, 4, 5] and (tables["fsdp2"]["batch_size"] == 8).all()
    pd.testing.assert_frame_equal(tables["fsdp2"], tables["ddp"], check_exact=True)
    numbers = ["delta", "chi_loss", "chi_net", "chi_pos", "g_sq", "j_sq", "loss", "g_sq_measure", "j_sq_measure"]
    pd.testing.assert_frame_equal(tables["fsdp2"][numbers], tables["one"][numbers], rtol=1e-5, atol=0)

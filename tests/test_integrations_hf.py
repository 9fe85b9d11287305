"""The Hugging Face Trainer integration: the example runs as written; a measured step's record is
the measurement of the step's whole batch (every micro-batch of gradient accumulation) with the
step's own gradient; the log-spaced schedule; BatchNorm refused."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from example_run import example_table
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

from spectral_reach.lnp import measure as measure_fn
from spectral_reach.lnp import windows
from spectral_reach.lnp.integrations import hf


def test_the_example_runs_and_writes_its_table(tmp_path):
    table = example_table("hf_trainer.py", tmp_path)
    assert table["step"].tolist() == [0, 3, 6, 9, 11]  # every 3 steps, and the final step
    assert (table["n_units"] == 2 * 4 * 15).all() and (table["batch_size"] == 8).all()  # both micro-batches
    assert table["loss"].iloc[-1] < table["loss"].iloc[0]


def tiny_trainer(tmp_path, callback_args: dict, **train_args) -> tuple[Trainer, hf.LNPCallback]:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=32,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=16,
    )
    ids = torch.randint(32, (48, 8), generator=torch.Generator().manual_seed(0))
    data = [{"input_ids": x, "labels": x} for x in ids]
    defaults = dict(per_device_train_batch_size=3, learning_rate=1e-3, report_to=[], save_strategy="no", use_cpu=True)
    args = TrainingArguments(output_dir=str(tmp_path), **{**defaults, **train_args})
    trainer = Trainer(model=LlamaForCausalLM(cfg), args=args, train_dataset=data)
    held_out = {"input_ids": ids[:4], "labels": ids[:4]}
    callback = hf.LNPCallback(held_out, tmp_path / "lnp.parquet", hutchinson=None, **callback_args).attach(trainer)
    return trainer, callback


def test_the_steps_gradient_is_the_gradient_of_its_whole_batch(tmp_path, monkeypatch):
    """Reused (no clipping, two micro-batches accumulated) equals recomputed on the concatenated batch."""
    pairs = []

    def both(model, loss_fn, batch, other, **kwargs):
        reused = measure_fn(model, loss_fn, batch, other, **kwargs)
        recomputed = measure_fn(model, loss_fn, batch, other, **{**kwargs, "train_grad": None})
        pairs.append((kwargs["train_grad"] is not None, reused, recomputed))
        return reused

    monkeypatch.setattr(hf, "measure", both)
    trainer, _ = tiny_trainer(tmp_path, {"every": 2}, max_steps=4, gradient_accumulation_steps=2, max_grad_norm=0.0)
    trainer.train()
    assert len(pairs) == 3 and all(reused_grad for reused_grad, _, _ in pairs)  # steps 0, 2 and the final 3
    for _, reused, recomputed in pairs:
        assert reused.n_units == recomputed.n_units == 2 * 3 * 7
        assert reused.delta == pytest.approx(recomputed.delta, rel=1e-4)
        assert reused.chi_pos == pytest.approx(recomputed.chi_pos, rel=1e-4)


def test_clipping_recomputes_the_gradient(tmp_path, monkeypatch):
    used = []
    real = hf.measure
    monkeypatch.setattr(hf, "measure", lambda *a, **k: used.append(k["train_grad"]) or real(*a, **k))
    trainer, _ = tiny_trainer(tmp_path, {"every": 3}, max_steps=3, max_grad_norm=1e-3)
    trainer.train()
    assert used == [None, None]  # steps 0 and 2 (the final): clipped .grad would scale delta by the clipping factor


def test_the_log_spaced_windows_schedule(tmp_path):
    trainer, callback = tiny_trainer(tmp_path, {"windows": (3, 2)}, max_steps=12)
    trainer.train()
    expected = sorted(windows.step_windows(windows.log_windows(12, 3, 2)))
    assert pd.read_parquet(tmp_path / "lnp.parquet")["step"].tolist() == expected


def test_each_measurement_is_logged_at_its_own_step(tmp_path, monkeypatch):
    """Issue 38: every measurement (not only the last of a logging interval) reaches log_history and
    TensorBoard at its own step (not the next logging step), the final step is measured, and with
    groups each parameter group's chi_pos is logged and tabled."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))  # transformers 5's place for it
    trainer, _ = tiny_trainer(
        tmp_path, {"every": 2, "groups": "default"}, max_steps=7, logging_steps=5, report_to=["tensorboard"]
    )
    trainer.train()
    table = pd.read_parquet(tmp_path / "lnp.parquet")
    assert table["step"].tolist() == [0, 2, 4, 6]
    logged = [(h["step"], h["lnp/chi_pos"]) for h in trainer.state.log_history if "lnp/chi_pos" in h]
    assert logged == list(zip(table["step"], table["chi_pos"]))
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    tb = [(e.step, e.value) for e in events.Scalars("train/lnp/chi_pos")]  # HF files logs under train/
    assert [s for s, _ in tb] == [0, 2, 4, 6]
    assert [v for _, v in tb] == pytest.approx(table["chi_pos"].tolist(), rel=1e-6)
    groups = pd.read_parquet(tmp_path / "lnp_groups.parquet")
    assert set(groups["group"]) == {"embedding", "block0.attention", "block0.mlp", "norms", "head"}
    assert "train/lnp/block0.mlp/chi_pos" in events.Tags()["scalars"]
    head = groups[groups["group"] == "head"]
    assert [h["lnp/head/chi_pos"] for h in trainer.state.log_history if "lnp/head/chi_pos" in h] == head[
        "chi_pos"
    ].tolist()


def test_a_callback_not_attached_is_refused_with_the_fix(tmp_path):
    trainer, callback = tiny_trainer(tmp_path, {"every": 2}, max_steps=2)
    callback.trainer = None
    with pytest.raises(ValueError, match=r"attach\(trainer\)"):
        trainer.train()


def test_batchnorm_is_refused(tmp_path):
    trainer, _ = tiny_trainer(tmp_path, {"every": 2}, max_steps=2)
    trainer.model.model.norm = torch.nn.BatchNorm1d(16)
    with pytest.raises(ValueError, match="BatchNorm, which computes another function in eval mode"):
        trainer.train()


def test_under_torchrun_every_rank_measures_the_global_batch(tmp_path):
    """Two processes (accelerate's multi-CPU DDP, gloo): the table holds the global batch's units."""
    table = example_table("hf_trainer.py", tmp_path, processes=2)
    assert table["step"].tolist() == [0, 3, 6, 9, 11]  # every 3 steps, and the final step
    assert (table["n_units"] == 2 * 2 * 4 * 15).all() and (table["batch_size"] == 16).all()

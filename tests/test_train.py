"""The training loop: resume after SIGKILL or SIGTERM equals an uninterrupted run (bitwise on CPU),
NaN losses stop with the step, tables have the documented columns, bad settings are named."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from workflow_run import hold_env

from spectral_reach.data import Contexts, TrainOrder, read_meta
from spectral_reach.models import llama
from spectral_reach.train import NonFiniteLoss, RunSpec, lm, train

SPEC = {
    "size": {"layers": 1, "hidden": 16, "ff": 32, "heads": 2},
    "vocab_size": 96,
    "context_length": 16,
    "batch_size": 4,
    "steps": 40,
    "lr": 1e-2,
    "seed": 3,
    "data_seed": 0,
    "betas": [0.9, 0.95],
    "eps": 1e-8,
    "weight_decay": 0.01,
    "warmup": 5,
    "schedule": "constant",
    "lnp": {"per_decade": 3, "width": 3, "hutchinson": 2, "measure_contexts": 16, "measure_batch": 4},
    "eval": {"per_decade": 3, "test_contexts": 8, "batch": 4},
    "checkpoint_every": 5,
    "log_every": 10,
}
TIMING = ["step_s", "lnp_s"]
COLUMNS = {
    "metrics": ["step", "tokens", "loss", "lr", "step_s", "lnp_s"],
    "lnp": [
        "step",
        "window",
        "tokens",
        "delta",
        "chi_loss",
        "chi_net",
        "chi_pos",
        "chi_loss_raw",
        "chi_net_raw",
        "loss",
        "loss_measure",
        "g_sq",
        "g_sq_measure",
        "j_sq",
        "j_sq_measure",
        "n_units",
        "n_units_measure",
        "batch_size",
        "batch_size_measure",
        "hutchinson",
        "variant",
        "delta_update",
    ],
    "eval": ["step", "tokens", "test_loss"],
}


def cli(spec: dict, data: Path, out: Path, state: Path, *extra: str, hold: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env = env if hold is None else hold_env(hold, env)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spectral_reach.cli",
            "train-lm",
            "--spec",
            json.dumps(spec),
            "--data-dir",
            str(data),
            "--out-dir",
            str(out),
            "--state-dir",
            str(state),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def wait_for_hold(marker: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Wait until the process started with ``hold=marker`` holds after its first checkpoint."""
    end = time.time() + timeout
    while not marker.exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < end, "no checkpoint appeared"
        time.sleep(0.02)


def assert_same_run(a: Path, b: Path) -> None:
    for name in COLUMNS:
        x, y = pd.read_parquet(a / f"{name}.parquet"), pd.read_parquet(b / f"{name}.parquet")
        pd.testing.assert_frame_equal(
            x.drop(columns=TIMING, errors="ignore"), y.drop(columns=TIMING, errors="ignore"), check_exact=True
        )
    ma, mb = llama.load(a / "model"), llama.load(b / "model")
    for (n, p), q in zip(ma.state_dict().items(), mb.state_dict().values()):
        assert torch.equal(p, q), n


@pytest.fixture(scope="module")
def reference(text_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    proc = cli(SPEC, text_data, out / "run", out / "state")
    assert proc.wait() == 0, proc.stdout.read()
    return out / "run"


def test_tables_have_the_documented_columns_and_finite_values(reference):
    for name, cols in COLUMNS.items():
        df = pd.read_parquet(reference / f"{name}.parquet")
        assert list(df.columns) == cols
        assert np.isfinite(df.select_dtypes("number").to_numpy()).all()
    metrics, lnp = pd.read_parquet(reference / "metrics.parquet"), pd.read_parquet(reference / "lnp.parquet")
    assert metrics["step"].tolist() == list(range(40))
    assert metrics["lr"].iloc[0] == pytest.approx(1e-2 / 5) and metrics["lr"].iloc[-1] == pytest.approx(1e-2)
    assert (lnp["variant"] == "cross").all() and lnp["n_units"].eq(4 * 15).all()
    assert ((lnp["chi_pos"] > -1) & (lnp["chi_pos"] < 1)).all()
    done = json.loads((reference / "done.json").read_text())
    assert done["resumed_at"] == [] and done["params"] == sum(
        p.numel() for p in llama.load(reference / "model").parameters()
    )
    assert not (reference.parent / "state").exists()  # resume checkpoints are removed at the end


def test_per_layer_lnp_adds_up_to_the_whole_and_the_optimizer_step_is_measured(reference, text_data, tmp_path):
    """Issue 39: ``lnp.groups`` writes lnp_groups.parquet (long form) without changing any other number;
    ``delta_update`` is AdamW's own step's loss change, measured at the parameters before the step."""
    spec = {**SPEC, "lnp": {**SPEC["lnp"], "groups": True}}
    proc = cli(spec, text_data, tmp_path / "run", tmp_path / "state")
    out = proc.communicate()[0]
    assert proc.returncode == 0, out
    # the live log line carries the latest test loss and chi_pos (issue 38)
    assert re.search(r"step 40/40 loss [\d.]+ lr \S+ test loss [\d.]+ chi_pos \S+ \d+ tokens/s eta", out), out
    assert_same_run(reference, tmp_path / "run")  # the split changes no number of the run
    assert {"lnp/block0.attention/chi_pos", "lnp/head/chi_net"} <= set(curves(tmp_path / "run"))
    whole = pd.read_parquet(tmp_path / "run" / "lnp.parquet").set_index("step")
    parts = pd.read_parquet(tmp_path / "run" / "lnp_groups.parquet")
    assert set(parts["group"]) == {"embedding", "block0.attention", "block0.mlp", "norms", "head"}
    assert parts.groupby("step").size().eq(5).all() and set(parts["step"]) == set(whole.index)
    sums = parts.groupby("step")[["delta", "j_sq", "j_sq_measure"]].sum()
    for col in sums:
        np.testing.assert_allclose(sums[col], whole.loc[sums.index, col], rtol=1e-9)
    weighted = (parts["weight"] * parts["chi_pos"]).groupby(parts["step"]).sum()
    np.testing.assert_allclose(weighted, whole.loc[weighted.index, "chi_pos"], rtol=1e-6)
    # AdamW's step is not the gradient's: its loss change differs, and is a descent direction on B'
    assert np.isfinite(whole["delta_update"]).all()
    assert not np.allclose(whole["delta_update"], whole["delta"], rtol=1e-2)
    assert (whole["delta_update"] > 0).mean() > 0.5


@pytest.mark.parametrize(
    "variant",
    [
        {"optimizer": {"name": "sgd", "momentum": 0.9}, "lr": 0.5},
        {"optimizer": {"name": "muon", "momentum": 0.95}, "init": "xavier"},
        {"schedule": "wsd", "decay_fraction": 0.25, "init": "he"},
    ],
    ids=["sgd", "muon-xavier", "wsd-he"],
)
def test_intervention_variants_train_and_are_measured(variant, text_data, tmp_path):
    """Issue 39: each optimizer, initialisation and schedule of the intervention axes trains through
    the loop, with LNP and the optimizer's own step measured."""
    proc = cli({**SPEC, **variant}, text_data, tmp_path / "run", tmp_path / "state")
    out = proc.communicate()[0]
    assert proc.returncode == 0, out
    metrics, lnp = (
        pd.read_parquet(tmp_path / "run" / "metrics.parquet"),
        pd.read_parquet(tmp_path / "run" / "lnp.parquet"),
    )
    assert np.isfinite(metrics["loss"]).all() and np.isfinite(lnp[["chi_pos", "delta_update"]]).all().all()
    assert metrics["loss"].tail(5).mean() < metrics["loss"].head(5).mean()
    if variant.get("schedule") == "wsd":  # stable to step 30 (of 40), then linear decay to 0
        assert metrics["lr"].iloc[29] == pytest.approx(1e-2) and metrics["lr"].iloc[35] == pytest.approx(1e-2 * 5 / 10)


def curves(run: Path) -> dict[str, list[tuple[int, float]]]:
    """The run's TensorBoard scalars, read back from its event files: ``{tag: [(step, value)]}``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_curves_are_the_tables_numbers(reference):
    """Issue 38: every run writes event files as it trains; read back, each tag holds the tables' numbers
    at their steps."""
    got = curves(reference)
    metrics, lnp = pd.read_parquet(reference / "metrics.parquet"), pd.read_parquet(reference / "lnp.parquet")
    ev = pd.read_parquet(reference / "eval.parquet")
    for tag, table, col in [
        ("train/loss", metrics, "loss"),
        ("train/lr", metrics, "lr"),
        ("test/loss", ev, "test_loss"),
        ("lnp/chi_pos", lnp, "chi_pos"),
        ("lnp/chi_net", lnp, "chi_net"),
        ("lnp/delta_update", lnp, "delta_update"),
    ]:
        steps, values = zip(*got[tag])
        assert list(steps) == table["step"].tolist(), tag
        np.testing.assert_allclose(values, table[col], rtol=1e-6, err_msg=tag)  # event files hold float32
    assert [s for s, _ in got["train/tokens_per_s"]] == [9, 19, 29, 39]  # each log_every line


def test_a_resumed_run_continues_its_curves_without_duplicate_steps(tmp_path):
    """A killed attempt may have written events past its last checkpoint; the resumed run purges them."""
    from spectral_reach.train.tracking import Tracker

    first = Tracker(tmp_path, 0)
    for step in range(10):
        first.scalars(step, {"train/loss": float(step)})
    first.close()  # killed at step 9, last checkpoint at step 6
    resumed = Tracker(tmp_path, 6)
    for step in range(6, 12):
        resumed.scalars(step, {"train/loss": 100.0 + step})
    resumed.close()
    got = curves(tmp_path)["train/loss"]
    assert [s for s, _ in got] == list(range(12))
    assert [v for _, v in got] == [float(s) for s in range(6)] + [100.0 + s for s in range(6, 12)]
    fresh = Tracker(tmp_path, 0)  # a run from step 0 keeps no curve of an earlier one
    fresh.scalars(0, {"train/loss": 5.0})
    fresh.close()
    assert curves(tmp_path)["train/loss"] == [(0, 5.0)]


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_and_matches(reference, text_data, tmp_path):
    proc = cli(SPEC, text_data, tmp_path / "run", tmp_path / "state", hold=tmp_path / "held")
    wait_for_hold(tmp_path / "held", proc)
    live = curves(tmp_path / "run")  # written while the job runs: up to its first checkpoint
    assert [s for s, _ in live["train/loss"]] == list(range(SPEC["checkpoint_every"]))
    proc.kill()
    proc.wait()
    rerun = cli(SPEC, text_data, tmp_path / "run", tmp_path / "state")
    log = rerun.communicate()[0]
    assert rerun.returncode == 0, log
    assert "resuming from checkpoint" in log
    resumed = json.loads((tmp_path / "run" / "done.json").read_text())["resumed_at"]
    assert resumed == [5]  # held after its first checkpoint (checkpoint_every 5)
    assert_same_run(reference, tmp_path / "run")


@pytest.mark.slow
def test_sigterm_checkpoints_exits_143_and_resumes(reference, text_data, tmp_path):
    proc = cli(SPEC, text_data, tmp_path / "run", tmp_path / "state", hold=tmp_path / "held")
    wait_for_hold(tmp_path / "held", proc)
    proc.send_signal(signal.SIGTERM)
    log = proc.communicate()[0]
    assert proc.returncode == 143, log
    assert "SIGTERM" in log and [p.name for p in (tmp_path / "state").glob("step*")] == ["step00000006"]
    rerun = cli(SPEC, text_data, tmp_path / "run", tmp_path / "state")
    assert rerun.wait() == 0
    assert json.loads((tmp_path / "run" / "done.json").read_text())["resumed_at"] == [6]
    assert_same_run(reference, tmp_path / "run")


def test_nan_loss_stops_with_step_and_keeps_last_checkpoint(text_data, tmp_path, monkeypatch):
    current = {"step": -1}
    real_batch, real_loss = TrainOrder.batch, lm.lm_loss

    def batch(self, step):
        current["step"] = step
        return real_batch(self, step)

    def poisoned(logits, targets):
        return real_loss(logits, targets) * (float("nan") if current["step"] >= 12 else 1.0)

    monkeypatch.setattr(TrainOrder, "batch", batch)
    monkeypatch.setattr(lm, "lm_loss", poisoned)
    spec = RunSpec.from_dict({**SPEC, "lnp": {**SPEC["lnp"], "per_decade": 1, "width": 1}})
    with pytest.raises(NonFiniteLoss, match=r"step 12: training loss nan; last finite loss [0-9.]+ at step 11"):
        train(spec, text_data, tmp_path / "run", tmp_path / "state")
    kept = sorted((tmp_path / "state").glob("step*"))
    assert [p.name for p in kept] == ["step00000010"]
    assert not (tmp_path / "run" / "done.json").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"steps": 10_000}, "steps=10000: one pass over .* has only"),
        ({"lr": 0.0}, "lr must be positive"),
        ({"lnp": {**SPEC["lnp"], "width": 99}}, "lnp.width=99 exceeds steps=40"),
        ({"lnp": {**SPEC["lnp"], "precision": "fp8"}}, "lnp.precision must be one of"),
        (
            {"lnp": {**SPEC["lnp"], "measure_contexts": 10_000}},
            "lnp.measure_contexts=10000, but .*validation.bin has only",
        ),
        ({"vocab_size": 64}, "a vocabulary of 96 tokens, more than the config's vocab_size 64"),
        ({"bogus": 1}, "unknown run settings"),
    ],
)
def test_bad_settings_name_the_key(text_data, tmp_path, change, message):
    with pytest.raises(Exception, match=message):
        train(RunSpec.from_dict({**SPEC, **change}), text_data, tmp_path / "run", tmp_path / "state")


def test_vocab_size_is_a_maximum(text_data, tmp_path):
    """A tokenizer with fewer tokens than vocab_size (a small corpus) trains the configured model:
    its output layer has vocab_size classes, those no token uses included."""
    spec = RunSpec.from_dict({**SPEC, "vocab_size": 128, "steps": 8, "warmup": 2, "lnp": {**SPEC["lnp"], "width": 1}})
    train(spec, text_data, tmp_path / "run", tmp_path / "state")
    model = llama.load(tmp_path / "run" / "model", "sdpa")
    assert model.config.vocab_size == 128 and model.lm_head.weight.shape[0] == 128
    assert read_meta(text_data / "train.bin")["vocab_size"] == 96


def test_data_order_depends_on_data_seed_only(text_data):
    ctx = Contexts(text_data / "train.bin", 16)
    a, b = TrainOrder(ctx, 4, 0), TrainOrder(ctx, 4, 0)
    assert all(torch.equal(a.batch(s)[0], b.batch(s)[0]) for s in range(3))
    assert not torch.equal(a.batch(0)[0], TrainOrder(ctx, 4, 1).batch(0)[0])
    x, y = a.batch(0)
    assert torch.equal(x[:, 1:], y[:, :-1]) and x.is_contiguous() and x.shape == (4, 15)


def test_losses_are_read_in_batches_not_every_step(text_data, tmp_path, monkeypatch):
    """The loss stays on the device: it is read at log steps, measurements and checkpoints only,
    and the table holds every step's loss, equal to the uninterrupted reference run's."""
    from spectral_reach.train import loop

    reads, real = [], loop._Loop.flush

    def counted(self):
        reads.append(len(self.pending))
        return real(self)

    monkeypatch.setattr(loop._Loop, "flush", counted)
    train(RunSpec.from_dict(SPEC), text_data, tmp_path / "run", tmp_path / "state")
    batched = [n for n in reads if n]
    measured = len(pd.read_parquet(tmp_path / "run" / "lnp.parquet"))
    # read only at measured steps, log steps and checkpoints, unmeasured steps together between them
    most = measured + SPEC["steps"] // SPEC["log_every"] + SPEC["steps"] // SPEC["checkpoint_every"]
    assert sum(batched) == SPEC["steps"] and len(batched) <= most < SPEC["steps"] and max(batched) > 1
    metrics = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    assert metrics["loss"].notna().all() and len(metrics) == SPEC["steps"]


def test_step_times_come_from_synchronised_intervals(reference):
    """step_s is each flush interval's wall time split evenly over its steps, plus a step's own
    measurement: equal within an interval of unmeasured steps, never below a step's lnp_s."""
    m = pd.read_parquet(reference / "metrics.parquet")
    assert m["step_s"].notna().all() and (m["step_s"] > 0).all()
    assert (m["step_s"] >= m["lnp_s"]).all()
    # steps 25-29 and 30-34 are each read together (at the checkpoints after steps 29 and 34), none
    # measured: between the window at 22-24 and the last one, 37-39
    measured = set(pd.read_parquet(reference / "lnp.parquet")["step"])
    assert not measured & set(range(25, 35)) and {24, 37} <= measured
    first, second = m[m["step"].between(25, 29)]["step_s"], m[m["step"].between(30, 34)]["step_s"]
    assert first.nunique() == 1 and second.nunique() == 1


def test_a_compiled_step_leaves_the_measurement_on_the_eager_module(text_data, tmp_path, monkeypatch):
    """compile: true compiles the training step; the LNP hooks and function mode must see the eager
    module (a compiled wrapper would hide every module call and parameter use from them)."""
    from spectral_reach.train import loop as loop_module

    seen = []
    real = loop_module.measure

    def spy(model, *args, **kwargs):
        seen.append(model)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(loop_module, "measure", spy)
    spec = RunSpec.from_dict({**SPEC, "compile": True})
    device = torch.device("cpu")
    task = lm.task(spec, text_data, device)
    run = loop_module._Loop(task, spec, device, tmp_path / "state", identity={})
    assert isinstance(run.step_model, torch._dynamo.eval_frame.OptimizedModule)
    x, y = task.order.batch(0)
    task.loss(task.model(x).logits, y).backward()
    before = [p.detach().clone() for p in run.params]
    task.optimizer.step()
    run.measure(0, x, y, before)
    (model,) = seen
    assert model.model is task.model and not isinstance(model.model, torch._dynamo.eval_frame.OptimizedModule)

"""A run knows what it is: its fingerprint is recorded in checkpoints, done.json and every table;
a checkpoint of another run (settings, data, code, none recorded, unreadable) is never resumed;
no non-finite state is checkpointed; data is checked against its sidecar where it is read."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_train import SPEC, assert_same_run

from spectral_reach.analysis.runs import StaleRun, check_current
from spectral_reach.data import Contexts, DataError, read_meta
from spectral_reach.data.memmap import sha256_file, sidecar_path, verify
from spectral_reach.models import llama
from spectral_reach.train import NonFiniteLoss, Preempted, RunSpec, fingerprint, loop, train
from spectral_reach.version import PROBE_VERSION, RESULT_VERSION

SHORT = {**SPEC, "steps": 16, "checkpoint_every": 4}


def preempted_run(spec: dict, data: Path, out: Path, state: Path, monkeypatch, at: int = 6) -> None:
    """Run ``spec`` until a SIGTERM-style stop after step ``at`` (checkpoint at ``at + 1``)."""
    real = loop._Loop.step

    def step(self, s):
        lr = real(self, s)
        self.preempted = s == at
        return lr

    with monkeypatch.context() as m:
        m.setattr(loop._Loop, "step", step)
        with pytest.raises(Preempted):
            train(RunSpec.from_dict(spec), data, out, state)
    assert [p.name for p in state.glob("step*")] == [f"step{at + 1:08d}"]


@pytest.fixture(scope="module")
def fresh(text_data, tmp_path_factory):
    """Uninterrupted runs of SHORT at two learning rates: {lr: run folder}."""
    root = tmp_path_factory.mktemp("fresh")
    runs = {}
    for lr in (1e-2, 5e-3):
        train(RunSpec.from_dict({**SHORT, "lr": lr}), text_data, root / f"{lr}", root / f"s{lr}")
        runs[lr] = root / f"{lr}"
    return runs


def test_done_json_and_every_table_record_the_run(fresh, text_data):
    done = json.loads((fresh[1e-2] / "done.json").read_text())
    assert done["spec"]["lr"] == 1e-2 and done["spec"]["size"] == SHORT["size"]
    assert "checkpoint_every" not in done["spec"]  # changes no number: not part of what the run is
    assert done["version"] == RESULT_VERSION
    assert done["inputs"]["train.bin"]["sha256"] == sha256_file(text_data / "train.bin")
    assert done["fingerprint"] == fingerprint.fingerprint({k: done[k] for k in ("version", "spec", "inputs")})
    probe = fingerprint.identity(RunSpec.from_dict({**SHORT, "trainable": "head"}), {})
    # a probe-only fix reruns probes alone; a bump of every run's version must lift the probes' too
    assert probe["version"] == PROBE_VERSION > RESULT_VERSION
    other = json.loads((fresh[5e-3] / "done.json").read_text())["fingerprint"]
    assert other != done["fingerprint"]
    for table in ("metrics", "lnp", "eval"):
        attrs = pd.read_parquet(fresh[1e-2] / f"{table}.parquet").attrs["run"]
        assert attrs["fingerprint"] == done["fingerprint"] and attrs["spec"] == done["spec"]


def test_a_summary_reads_a_run_only_if_its_params_file_still_holds_its_settings(fresh, tmp_path):
    done = fresh[1e-2] / "done.json"
    params = tmp_path / "params.json"

    def write(spec):
        params.write_text(json.dumps({"spec": json.dumps(spec, sort_keys=True), "state": "results/..."}))

    write({**SHORT, "lr": 1e-2, "checkpoint_every": 2, "log_every": 1})
    assert check_current({"size": "a"}, done, params)["spec"]["lr"] == 1e-2  # intervals change no number
    write({**SHORT, "lr": 5e-3})
    with pytest.raises(StaleRun, match=r"run \{'size': 'a'\} .* lr: ran with 0.01, config says 0.005\. Rerun it"):
        check_current({"size": "a"}, done, params)
    write({**SHORT, "lr": 1e-2, "size": {**SHORT["size"], "hidden": 32}})
    with pytest.raises(StaleRun, match="size: ran with .*'hidden': 16.*config says .*'hidden': 32"):
        check_current({"size": "a"}, done, params)


def test_changed_lr_starts_fresh_and_equals_an_uninterrupted_run_of_it(fresh, text_data, tmp_path, monkeypatch, caplog):
    preempted_run(SHORT, text_data, tmp_path / "run", tmp_path / "state", monkeypatch)
    with caplog.at_level(logging.WARNING):
        train(RunSpec.from_dict({**SHORT, "lr": 5e-3}), text_data, tmp_path / "run", tmp_path / "state")
    [line] = [r.getMessage() for r in caplog.records if "not resuming" in r.getMessage()]
    assert "its run differs: lr: 0.01 -> 0.005. Starting fresh" in line
    assert (tmp_path / "state.superseded" / "step00000007").is_dir()  # set aside, not resumed, not deleted
    assert json.loads((tmp_path / "run" / "done.json").read_text())["resumed_at"] == []
    assert_same_run(fresh[5e-3], tmp_path / "run")


def test_same_run_resumes_even_with_other_checkpoint_and_log_intervals(fresh, text_data, tmp_path, monkeypatch):
    preempted_run(SHORT, text_data, tmp_path / "run", tmp_path / "state", monkeypatch)
    train(
        RunSpec.from_dict({**SHORT, "checkpoint_every": 3, "log_every": 2}),
        text_data,
        tmp_path / "run",
        tmp_path / "state",
    )
    assert json.loads((tmp_path / "run" / "done.json").read_text())["resumed_at"] == [7]
    assert_same_run(fresh[1e-2], tmp_path / "run")


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda state: state.pop("fingerprint"), "records no fingerprint (written by an older version)"),
        (lambda state: state["identity"].update(version=0), f"version: 0 -> {RESULT_VERSION}"),
        (None, "cannot be read"),
    ],
)
def test_old_or_unreadable_checkpoint_starts_fresh_with_a_reason(
    fresh, text_data, tmp_path, monkeypatch, caplog, damage, reason
):
    preempted_run(SHORT, text_data, tmp_path / "run", tmp_path / "state", monkeypatch)
    path = tmp_path / "state" / "step00000007" / "state.pt"
    if damage is None:
        path.write_bytes(b"\x00garbage")
    else:
        state = torch.load(path, weights_only=False)
        damage(state)
        if "fingerprint" in state:
            state["fingerprint"] = fingerprint.fingerprint(state["identity"])
        torch.save(state, path)
    with caplog.at_level(logging.WARNING):
        train(RunSpec.from_dict(SHORT), text_data, tmp_path / "run", tmp_path / "state")
    assert any(reason in r.getMessage() and "Starting fresh" in r.getMessage() for r in caplog.records)
    assert_same_run(fresh[1e-2], tmp_path / "run")


def test_changed_data_names_the_file(text_data, tmp_path):
    spec = RunSpec.from_dict(SHORT)
    files = {f"{s}.bin": text_data / f"{s}.bin" for s in ("train", "validation", "test")}
    old = fingerprint.identity(spec, files)
    copy = tmp_path / "data"
    shutil.copytree(text_data, copy)
    meta = read_meta(copy / "train.bin")
    sidecar_path(copy / "train.bin").write_text(json.dumps({**meta, "sha256": "0" * 64}))
    new = fingerprint.identity(spec, {k: copy / p.name for k, p in files.items()})
    assert fingerprint.differences(old, new) == [f"inputs.train.bin.sha256: {meta['sha256']} -> {'0' * 64}"]


def test_non_finite_parameters_are_never_checkpointed_and_the_advised_edit_runs_fresh(
    fresh, text_data, tmp_path, monkeypatch
):
    """Step 1's update makes a parameter infinite (driven directly: where a real blow-up lands
    depends on the machine's floating point); its loss, computed before the update, is finite,
    so the guard at the checkpoint after step 1 is the one that fires."""
    real = loop._Loop.step

    def step(self, s):
        lr = real(self, s)
        if s == 1:
            with torch.no_grad():
                next(self.task.model.parameters())[0] = float("inf")
        return lr

    with monkeypatch.context() as m:
        m.setattr(loop._Loop, "step", step)
        with pytest.raises(NonFiniteLoss) as err:
            train(RunSpec.from_dict({**SHORT, "checkpoint_every": 2}), text_data, tmp_path / "run", tmp_path / "state")
    message = str(err.value)
    assert "after step 1 (its loss finite" in message and "are not finite" in message and "not checkpointed" in message
    assert "Nothing was checkpointed: the next run starts fresh. Lower the learning rate" in message
    assert not list((tmp_path / "state").glob("step*"))
    train(RunSpec.from_dict({**SHORT, "lr": 5e-3}), text_data, tmp_path / "run", tmp_path / "state")
    assert_same_run(fresh[5e-3], tmp_path / "run")


def assert_finite_checkpoints(state: Path) -> None:
    """Every checkpoint in ``state`` holds finite parameters and optimizer state."""
    for ckpt in state.glob("step*"):
        tensors = list(llama.load(ckpt / "model").state_dict().values())
        saved = torch.load(ckpt / "state.pt", weights_only=False)["optimizer"]["state"]
        tensors += [t for s in saved.values() for t in s.values() if torch.is_tensor(t) and t.is_floating_point()]
        assert all(torch.isfinite(t).all() for t in tensors), ckpt


def test_a_blown_up_run_keeps_what_either_guard_promises(fresh, text_data, tmp_path):
    """A real blow-up (lr 1e6) stops at a NaN loss or at non-finite parameters, whichever this
    machine's rounding reaches first; both promise the same: the advice, no non-finite state in any
    checkpoint, and the advised edit runs fresh (any checkpoint of the old lr set aside)."""
    blown = {**SHORT, "lr": 1e6, "warmup": 0, "checkpoint_every": 2}
    with pytest.raises(NonFiniteLoss, match=r"Lower the learning rate \(lr\) in config/"):
        train(RunSpec.from_dict(blown), text_data, tmp_path / "run", tmp_path / "state")
    assert_finite_checkpoints(tmp_path / "state")
    train(RunSpec.from_dict({**SHORT, "lr": 5e-3}), text_data, tmp_path / "run", tmp_path / "state")
    assert json.loads((tmp_path / "run" / "done.json").read_text())["resumed_at"] == []
    assert_same_run(fresh[5e-3], tmp_path / "run")


def test_nan_after_a_checkpoint_says_what_the_next_run_does(text_data, tmp_path, monkeypatch):
    from spectral_reach.data import TrainOrder
    from spectral_reach.train import lm

    current, real_batch, real_loss = {"step": -1}, TrainOrder.batch, lm.lm_loss

    def batch(self, step):
        current["step"] = step
        return real_batch(self, step)

    monkeypatch.setattr(TrainOrder, "batch", batch)
    monkeypatch.setattr(lm, "lm_loss", lambda o, y: real_loss(o, y) * (float("nan") if current["step"] >= 10 else 1.0))
    spec = {**SHORT, "lnp": {**SHORT["lnp"], "per_decade": 1, "width": 1}}
    with pytest.raises(NonFiniteLoss) as err:
        train(RunSpec.from_dict(spec), text_data, tmp_path / "run", tmp_path / "state")
    ckpt = tmp_path / "state" / "step00000008"
    assert ckpt.is_dir()
    assert f"resumes the last good checkpoint, {ckpt} (step 8)" in str(err.value)
    assert f"delete {tmp_path / 'state'}" in str(err.value) and "starts fresh" in str(err.value)


@pytest.fixture
def data_copy(text_data, tmp_path):
    return Path(shutil.copytree(text_data, tmp_path / "data"))


def corrupt(path: Path, at: int, n: int = 64) -> None:
    """Overwrite ``n`` bytes at ``at`` with 0xFF in place: same size, same sidecar."""
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(b"\xff" * n)


def test_sidecar_records_the_sha256_of_its_file(text_data):
    for split in ("train", "validation", "test"):
        assert read_meta(text_data / f"{split}.bin")["sha256"] == sha256_file(text_data / f"{split}.bin")


def test_corruption_in_place_is_found_before_the_first_step(data_copy, tmp_path):
    corrupt(data_copy / "train.bin", 4000)
    with pytest.raises(DataError, match=r"train.bin: sha256 .* its sidecar says .* delete .*train.bin and its sidecar"):
        train(RunSpec.from_dict(SHORT), data_copy, tmp_path / "run", tmp_path / "state")
    assert not (tmp_path / "state").exists() and not (tmp_path / "run").exists()
    verify(data_copy / "train.bin", checksum_max_bytes=1000)  # too large to hash at this threshold: size only


def test_a_bad_token_id_is_named_before_it_reaches_the_model(data_copy, tmp_path):
    """Above the hashing threshold, the batch that holds a bad id stops the run with a DataError
    naming the file, the offset, the id and the vocabulary; the finished run there is kept."""
    train(RunSpec.from_dict(SHORT), data_copy, tmp_path / "run", tmp_path / "state")
    done = (tmp_path / "run" / "done.json").read_text()
    ctx = Contexts(data_copy / "train.bin", SHORT["context_length"])
    first = np.random.default_rng(SHORT["data_seed"]).permutation(len(ctx))[:4]  # step 0's contexts
    corrupt(data_copy / "train.bin", int(first[2]) * 16 * 2 + 6, 2)  # token 3 of the batch's third context
    at = int(first[2]) * 16 + 3
    with pytest.raises(DataError) as err:
        train(RunSpec.from_dict(SHORT), data_copy, tmp_path / "run", tmp_path / "state", checksum_max_mb=0)
    assert str(err.value).startswith(f"{data_copy / 'train.bin'}: token id 65535 at value offset {at} (byte {2 * at})")
    assert "outside the 96 of its sidecar" in str(err.value) and "rerun its data rule" in str(err.value)
    assert (tmp_path / "run" / "done.json").read_text() == done


def test_a_bad_label_is_named(image_data, tmp_path):
    from spectral_reach.data import Images

    copy = Path(shutil.copytree(image_data, tmp_path / "img"))
    corrupt(copy / "train_labels.bin", 5, 1)
    with pytest.raises(DataError, match=r"train_labels.bin: label 255 at value offset 5 .* outside the 10"):
        Images(copy / "train_rgb.bin", copy / "train_labels.bin").get(np.arange(8))


@pytest.mark.parametrize("text", ["{not json", '{"shape": [3]}', '{"dtype": "nope", "shape": [3]}'])
def test_a_corrupt_sidecar_is_named(data_copy, text):
    sidecar_path(data_copy / "test.bin").write_text(text)
    with pytest.raises(DataError, match=r"test.json: corrupt sidecar .* delete .*test.bin and its sidecar"):
        verify(data_copy / "test.bin", 1e9)

"""W&B and MLflow besides TensorBoard (config key tracking): read back, each holds the run's own
tables at their steps, and a resumed run continues the same W&B and MLflow runs without a step twice."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_train import SPEC

from spectral_reach.train import RunSpec, train
from spectral_reach.train.tracking import Tracker

pytest.importorskip("wandb", reason="W&B is optional: pip install -e '.[tracking]'")
pytest.importorskip("mlflow", reason="MLflow is optional: pip install -e '.[tracking]'")


def wandb_history(run: Path) -> dict[int, dict[str, float]]:
    """``{step: {tag: value}}`` of the offline W&B run under ``run/wandb``, over the files of all
    its attempts (a resumed run writes one more); no step may come twice."""
    history: dict[int, dict[str, float]] = {}
    for path in sorted((run / "wandb").glob("offline-run-*/run-*.wandb")):
        attempt = wandb_file(path)
        assert not set(attempt) & set(history), "a step sent twice"
        history |= attempt
    return history


def wandb_file(path: Path) -> dict[int, dict[str, float]]:
    """The history of one ``.wandb`` file: a 7-byte header (``:W&B``, magic, version), then
    LevelDB-log records (a 7-byte header: crc32c, length, type; in 32 KiB blocks), each a
    serialized ``Record`` proto (wandb 0.31 has no Python reader of its own)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, chunk, history = path.read_bytes(), 7, b"", {}
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        length, kind = struct.unpack("<HB", data[pos + 4 : pos + 7])
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = pb.Record()
            record.ParseFromString(chunk)
            chunk = b""
            if record.WhichOneof("record_type") == "history":
                items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
                history.setdefault(items.pop("_step"), {}).update({k: v for k, v in items.items() if "/" in k})
        elif kind == 0:
            break
    return history


def mlflow_curves(uri: str) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """``{run name: {tag: [(step, value)]}}`` of every run in the MLflow store at ``uri``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    out = {}
    for exp in client.search_experiments():
        for run in client.search_runs([exp.experiment_id]):
            out[run.info.run_name] = {
                tag: [
                    (m.step, m.value)
                    for m in sorted(client.get_metric_history(run.info.run_id, tag), key=lambda m: m.step)
                ]
                for tag in run.data.metrics
            }
    return out


def test_wandb_and_mlflow_hold_the_tables_numbers(text_data, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    backends = {"wandb": {"project": "p", "mode": "offline"}, "mlflow": {"tracking_uri": uri}, "group": "study"}
    run = tmp_path / "results" / "lm" / "stories" / "a" / "seed0"
    train(RunSpec.from_dict({**SPEC, "tracking": backends}), text_data, run, tmp_path / "state")
    metrics, lnp = pd.read_parquet(run / "metrics.parquet"), pd.read_parquet(run / "lnp.parquet")
    ev = pd.read_parquet(run / "eval.parquet")
    history = wandb_history(run)
    (name,) = mlflow_curves(uri)
    ml = mlflow_curves(uri)[name]
    assert name == run.as_posix()
    for tag, table, col in [
        ("train/loss", metrics, "loss"),
        ("test/loss", ev, "test_loss"),
        ("lnp/chi_pos", lnp, "chi_pos"),
        ("lnp/chi_net", lnp, "chi_net"),
    ]:
        wb = [(s, v[tag]) for s, v in sorted(history.items()) if tag in v]
        for got in (wb, ml[tag]):
            assert [s for s, _ in got] == table["step"].tolist(), tag
            np.testing.assert_allclose([v for _, v in got], table[col], rtol=1e-12, err_msg=tag)
    state = json.loads((run / "tracking.json").read_text())
    assert state["sent"] == 39 and set(state) == {"sent", "wandb", "mlflow"}


def test_a_resumed_run_continues_the_same_wandb_and_mlflow_runs(tmp_path, monkeypatch):
    """Killed after sending step 9 (its last checkpoint at step 6), resumed at 6: the same W&B and
    MLflow runs go on from step 10, with no step twice; a run from step 0 starts new ones."""
    monkeypatch.setenv("WANDB_SILENT", "true")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    backends = {"wandb": {"project": "p", "mode": "offline"}, "mlflow": {"tracking_uri": uri}}
    first = Tracker(tmp_path / "run", 0, backends)
    ids = json.loads((tmp_path / "run" / "tracking.json").read_text())
    for step in range(10):
        first.scalars(step, {"train/loss": float(step)})
    first.close()
    resumed = Tracker(tmp_path / "run", 6, backends)
    assert {k: v for k, v in json.loads((tmp_path / "run" / "tracking.json").read_text()).items() if k != "sent"} == {
        k: v for k, v in ids.items() if k != "sent"
    }
    for step in range(6, 12):
        resumed.scalars(step, {"train/loss": 100.0 + step})
    resumed.close()
    expected = [(s, float(s)) for s in range(10)] + [(10, 110.0), (11, 111.0)]
    assert [(s, v["train/loss"]) for s, v in sorted(wandb_history(tmp_path / "run").items())] == expected
    assert mlflow_curves(uri)[(tmp_path / "run").as_posix()]["train/loss"] == expected
    fresh = Tracker(tmp_path / "run", 0, backends)
    fresh.close()
    again = json.loads((tmp_path / "run" / "tracking.json").read_text())
    assert again["wandb"] != ids["wandb"] and again["mlflow"] != ids["mlflow"]

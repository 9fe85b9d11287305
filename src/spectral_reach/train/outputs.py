"""What a finished run leaves in its folder: ``model/`` (``save_pretrained``), the ``metrics``,
``lnp`` and ``eval`` tables, and ``done.json``, each written so that a killed job leaves no
finished-looking partial file, and each recording what the run is (its fingerprint, settings,
code version and inputs: :mod:`.fingerprint`): ``json.load`` for ``done.json``,
``pd.read_parquet(path).attrs["run"]`` for a table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..io import atomic_file


def write_outputs(
    spec: Any,
    model: torch.nn.Module,
    rows: dict[str, list],
    out_dir: Path,
    n_params: int,
    resumed: list[int],
    seen: dict[str, int],
    record: dict[str, Any],
) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    shutil.rmtree(out_dir / "model", ignore_errors=True)
    tmp.rename(out_dir / "model")
    for name, table in rows.items():
        df = pd.DataFrame(table)
        df.attrs["run"] = record
        with atomic_file(out_dir / f"{name}.parquet") as tmp:
            df.to_parquet(tmp, index=False)
    metrics = pd.DataFrame(rows["metrics"])
    summary = {
        "params": n_params,
        "steps": spec.steps,
        **seen,
        "final_test_loss": rows["eval"][-1]["test_loss"],
        "train_s": float(metrics["step_s"].sum()),
        "lnp_s": float(metrics["lnp_s"].sum()),
        "resumed_at": resumed,
        **record,
    }
    (out_dir / "done.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary

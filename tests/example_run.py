"""Running an example under examples/ as a user would, and reading the LNP table it wrote."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from workflow_run import ROOT


def example_table(name: str, out: Path, processes: int = 1) -> pd.DataFrame:
    """``python examples/<name> OUT`` (under torchrun with ``processes`` > 1); its ``lnp.parquet``,
    whose components must be finite."""
    launcher = [sys.executable] + (
        ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes)] if processes > 1 else []
    )
    proc = subprocess.run(
        [*launcher, str(ROOT / "examples" / name), str(out)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = pd.read_parquet(out / "lnp.parquet")
    assert np.isfinite(table[["delta", "chi_loss", "chi_net", "chi_pos"]].to_numpy()).all()
    return table

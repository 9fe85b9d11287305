"""What a researcher copies from the documents works as written: every Python block of the README
runs on the CPU install, and the SLURM profile sends no placeholder partition or account."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml
from workflow_run import ROOT

BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_the_readme_has_python_blocks():
    assert BLOCKS


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_every_readme_python_block_runs_as_written(block, tmp_path):
    proc = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    if "measure(" in block:  # the LNP loop prints the components it measured, and the loss falls
        rows = re.findall(r"step (\d+): loss ([\d.]+) chi_loss (\S+) chi_net (\S+) chi_pos (\S+)", proc.stdout)
        assert len(rows) >= 2, proc.stdout
        assert float(rows[-1][1]) < float(rows[0][1])
        assert all(0 < float(r[2]) and 0 < float(r[3]) and abs(float(r[4])) <= 1 for r in rows)


def test_the_slurm_profile_sends_no_placeholder_partition_or_account():
    """Unset, SLURM's defaults apply; a placeholder would go to every job silently."""
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    resources = [profile.get("default-resources", {}), *profile.get("set-resources", {}).values()]
    for r in resources:
        assert not {"slurm_partition", "slurm_account"} & set(r), r

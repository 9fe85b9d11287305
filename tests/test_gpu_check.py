"""The prepared GPU check (benchmarks/gpu_check.py, ``make gpu-check``) runs on CPU with tiny
shapes through the same code path, so it is known to work before a GPU appears."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from workflow_run import ROOT

pytestmark = pytest.mark.slow


def test_the_gpu_check_runs_on_cpu_and_writes_its_report(tmp_path):
    out = tmp_path / "gpu_check.md"
    args = ["--device", "cpu", "--config", str(ROOT / "tests/configs/ci.yaml")]
    args += ["--rows", "lm_train/stories/a", "vit_train/standard/a", "--pack", "2", "--warmup", "2", "--repeats", "3"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/gpu_check.py"), *args, "--out", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = out.read_text()
    assert "# GPU check on CPU" in report and "**tests/test_gpu.py**: exit 0: 6 skipped" in report
    for row in ("lm_train/stories/a", "vit_train/standard/a"):
        line = next(line for line in report.splitlines() if line.startswith(f"| {row} "))
        eager, compiled = (float(x) for x in line.split("|")[3:5])
        assert eager > 0 and compiled > 0
    assert re.search(r"\*\*Packing\*\*: 2 runs of `lm_train/stories/a` sharing the device: [\d.]+x", report)
    total = re.search(r"\| \*\*total\*\* \| \*\*([\d.e+-]+)\*\* \|", report)
    assert total and float(total.group(1)) > 0
    assert "12 job kinds" in report  # every kind of the CI config: 4 LM, 4 probe (2 a size), 4 ViT

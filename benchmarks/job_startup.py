"""What a workflow job pays before and after its work: a ``spectral-reach`` process, start to exit.

Every training job is one process that imports torch and transformers (~10^6 long-lived Python
objects). :func:`spectral_reach.cli.main` makes full collections of the cyclic garbage collector
rarer and freezes the heap before exit; the baseline is the same command with Python's defaults.
The command is ``lm-table`` on the demo's story sizes: it imports the training stack (it counts
parameters with transformers' Llama) and does almost nothing else. The two variants alternate, so
that a change of the machine's speed hits both alike.

Prints medians of ``--repeats`` process wall times and their ratio. Usage::

    python benchmarks/job_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

# The baseline: the command with Python's default thresholds and no freeze before exit.
DEFAULTS = (
    "import gc; import spectral_reach.cli as c; "
    "c.FULL_COLLECTION_EVERY = gc.get_threshold()[2]; gc.freeze = lambda: None; "
)
TUNED = "import spectral_reach.cli as c; "


def command(out: Path) -> list[str]:
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    sizes = json.dumps(config["lm"]["synthstories"]["sizes"])
    vocab, tolerance = config["data"]["synthstories"]["vocab_size"], config["analysis"]["param_tolerance"]
    return ["lm-table", "--sizes", sizes, "--vocab-size", str(vocab), "--tolerance", str(tolerance),
            "--out-md", str(out / "t.md"), "--out-csv", str(out / "t.csv")]  # fmt: skip


def wall(prefix: str, argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"{prefix}c.main({argv!r})"], check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        argv = command(Path(tmp))
        wall(TUNED, argv)  # warm the file cache
        times = {"defaults": [], "tuned": []}
        for _ in range(args.repeats):
            times["defaults"].append(wall(DEFAULTS, argv))
            times["tuned"].append(wall(TUNED, argv))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"spectral-reach lm-table, process start to exit, median of {args.repeats}:")
    print(f"  Python's GC defaults  {med['defaults']:6.2f} s")
    print(f"  spectral_reach.cli    {med['tuned']:6.2f} s")
    print(
        f"  saved per job         {med['defaults'] - med['tuned']:6.2f} s  (ratio {med['defaults'] / med['tuned']:.2f}x)"
    )


if __name__ == "__main__":
    main()

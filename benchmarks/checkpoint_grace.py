"""What a SLURM cluster must allow the paper study (issue 40): the kill grace time of its largest
run and the disk its models take.

1. **Grace time.** On SIGTERM (a time limit, preemption, ``scancel``) a training job finishes its
   step, checks its state and writes a resume checkpoint (model by ``save_pretrained``, AdamW state,
   tables so far). SLURM sends SIGKILL ``KillWait`` seconds later (30 s by default), so the write
   must fit. Measured here for the paper's largest model (134M, SimpleStories) on this machine's
   disk: the time of :meth:`spectral_reach.train.loop._Loop.checkpoint`'s two parts (the finite
   check and :func:`spectral_reach.train.checkpoint.save`) and the checkpoint's size.
2. **Disk.** Every language-model, probe and ViT run of ``config/paper.yaml`` keeps its final model
   (fp32 safetensors, 4 bytes per parameter), counted from the config's sizes; a running job also
   holds one resume checkpoint (weights and AdamW's two moments, 12 bytes per parameter).

Run on a quiet machine: ``python benchmarks/checkpoint_grace.py`` (about a minute, 3 GB of memory).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import transformers
import yaml
from snakemake.utils import validate

from spectral_reach.models import llama, vit
from spectral_reach.train import checkpoint, guards

ROOT = Path(__file__).resolve().parents[1]
PAPER = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
validate(
    PAPER, str(ROOT / "workflow/schemas/config.schema.yaml")
)  # the schema's defaults filled in, as the workflow does


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def grace(repeats: int = 3) -> dict:
    data = PAPER["data"]["simplestories"]
    size = {k: v for k, v in PAPER["lm"]["simplestories"]["sizes"]["134M"].items() if k not in ("lr", "resources")}
    model = llama.build(size, data["vocab_size"], PAPER["lm"]["simplestories"]["context_length"], 0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, data["vocab_size"], (1, 64))
    llama.lm_loss(model(x[:, :-1]).logits, x[:, 1:]).backward()
    opt.step()  # AdamW's moments exist, as in a running job
    state = {"optimizer": opt.state_dict(), "step": 1, "rows": []}
    times, checks = [], []
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:  # this checkout's disk, where runs/ lives
        for i in range(repeats):
            t0 = time.perf_counter()
            guards.check_state(model, opt, i + 1, 0.0)
            t1 = time.perf_counter()
            saved = checkpoint.save(Path(tmp) / "state", i + 1, model, state)
            times.append(time.perf_counter() - t1)
            checks.append(t1 - t0)
        size_bytes = du(saved)
        shutil.rmtree(Path(tmp) / "state")
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "check_s": statistics.median(checks),
        "write_s": statistics.median(times),
        "writes": times,
        "bytes": size_bytes,
    }


def disk() -> dict:
    lm_final, largest = 0, 0
    runs = 0
    for d in PAPER["datasets"]:
        c, vocab = PAPER["lm"][d], PAPER["data"][d]["vocab_size"]
        for s in c["sizes"].values():
            n = llama.count_parameters({k: v for k, v in s.items() if k not in ("lr", "resources")}, vocab)
            probes = len(PAPER["probe"]["seeds"]) * 2  # pretrained and random backbone, each a whole model
            lm_final += 4 * n * (len(c["seeds"]) + probes)
            runs += len(c["seeds"]) + probes
            largest = max(largest, 12 * n)
    vit_final = 0
    v = PAPER["vit"]
    for par in ("standard", "mup"):
        for s in v[par]["sizes"].values():
            n = vit.count_parameters({k: x for k, x in s.items() if k not in ("lr", "resources")})
            vit_final += 4 * n * len(v["seeds"])
            runs += len(v["seeds"])
    return {"runs": runs, "lm_bytes": lm_final, "vit_bytes": vit_final, "largest_resume_bytes": largest}


def main() -> None:
    transformers.utils.logging.disable_progress_bar()
    g = grace()
    print(
        f"134M checkpoint ({g['params']:,} parameters): {g['bytes'] / 2**30:.2f} GiB, finite check "
        f"{g['check_s']:.2f} s, write {g['write_s']:.2f} s (median of 3) on this disk"
    )
    print("each write:", ", ".join(f"{t:.2f} s" for t in g["writes"]))
    print(f"grace needed: one training step + {g['check_s'] + g['write_s']:.1f} s; SLURM's default KillWait is 30 s")
    d = disk()
    print(
        f"paper study: {d['runs']} runs keep {(d['lm_bytes'] + d['vit_bytes']) / 2**30:.1f} GiB of final models "
        f"(language models and probes {d['lm_bytes'] / 2**30:.1f} GiB, ViTs {d['vit_bytes'] / 2**30:.2f} GiB); "
        f"the largest resume checkpoint {d['largest_resume_bytes'] / 2**30:.2f} GiB per running job"
    )


if __name__ == "__main__":
    main()

"""Cost of one LNP measurement on a BERT-base-shaped masked LM whose decoder is tied to the word
embedding and has a bias (transformers' ``BertForMaskedLM``), against a training step.

* time: median of ``--repeats`` training steps (forward, backward, AdamW) and of ``--repeats``
  measurements (cross variant, K Hutchinson vectors, the step's gradient reused), in one process;
* memory: the peak resident set of a child process that builds the model and runs one training
  step, against one that runs the step and then a measurement (the measurement's peak over the
  training peak).

Targets (issue 23): at most 8x a training step in time and 1.5x its peak memory. Before the tied
rule took the bias, the table (30522 x 768) went to call replay, which formed a (b, V, d) block.

    python benchmarks/lnp_tied_mlm.py [--layers 12] [--batch 8] [--tokens 128] [--k 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from transformers import BertConfig, BertForMaskedLM

from spectral_reach.lnp import LogitsOnly, PerSampleNorms, measure


def build(a: argparse.Namespace) -> LogitsOnly:
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=30522,
        hidden_size=768,
        num_hidden_layers=a.layers,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )
    return LogitsOnly(BertForMaskedLM(cfg))


def mlm_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(outputs.flatten(0, 1), targets.flatten())


def batch(a: argparse.Namespace, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(30522, (a.batch, a.tokens), generator=g)
    targets = torch.where(torch.rand(ids.shape, generator=g) < 0.15, ids, torch.full_like(ids, -100))
    return ids, targets


def step(model, opt, b) -> list[torch.Tensor]:
    """A training step; the gradient it computed (before the update, as measure wants it)."""
    opt.zero_grad(set_to_none=True)
    mlm_loss(model(b[0]), b[1]).backward()
    grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    opt.step()
    return grads


def lnp(model, b, other, grads, a, seed: int):
    model.eval()
    rec = measure(
        model, mlm_loss, b, other, hutchinson=a.k, train_grad=grads, generator=torch.Generator().manual_seed(seed)
    )
    model.train()
    return rec


def child(a: argparse.Namespace) -> None:
    """One phase in this process; prints its peak resident set in MiB."""
    model = build(a).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    grads = step(model, opt, batch(a, 0))
    if a.phase == "measure":
        lnp(model, batch(a, 0), batch(a, 1), grads, a, 0)
    print(json.dumps({"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def peak(a: argparse.Namespace, phase: str) -> float:
    args = [sys.executable, __file__, "--phase", phase] + [
        f"--{k}={getattr(a, k)}" for k in ("layers", "batch", "tokens", "k")
    ]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_mib"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--phase", choices=["step", "measure"], help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.phase:
        return child(a)
    model = build(a).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    b, other = batch(a, 0), batch(a, 1)
    model.eval()
    with PerSampleNorms(model) as norms:
        with norms.forward(a.batch, b[0]):
            out = model(b[0])
        norms.plan(out)
        routes = sorted({how for _, how in norms.covered})
    model.train()
    grads = step(model, opt, b)  # warm-up, and the first measurement's one-time check
    lnp(model, b, other, grads, a, 0)
    t_step, t_lnp = [], []
    for r in range(a.repeats):
        t0 = time.perf_counter()
        grads = step(model, opt, b)
        t_step.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        lnp(model, b, other, grads, a, r + 1)
        t_lnp.append(time.perf_counter() - t0)
    step_s, lnp_s = statistics.median(t_step), statistics.median(t_lnp)
    step_mib, measure_mib = peak(a, "step"), peak(a, "measure")
    print(f"BERT-base-shaped tied MLM: {a.layers} layers, b = {a.batch}, T = {a.tokens}, K = {a.k}; routes {routes}")
    print(f"time:   training step {step_s:.2f} s, measurement {lnp_s:.2f} s: {lnp_s / step_s:.2f}x (target <= 8x)")
    print(
        f"memory: peak with a training step {step_mib:.0f} MiB, with step and measurement {measure_mib:.0f} MiB: "
        f"{measure_mib / step_mib:.2f}x (target <= 1.5x)"
    )


if __name__ == "__main__":
    main()

"""Cost of one LNP measurement against a training step and a straightforward Opacus baseline.

For two model shapes (SimpleStories-like and CIFAR-5M-next-pixel-like Llamas), in one run:

* train step: forward, backward, AdamW step;
* ``measure``: cross variant, K Hutchinson vectors, the training gradient reused;
* Opacus baseline: for each of the K vectors a fresh forward and backward through
  ``GradSampleModuleFastGradientClipping`` (ghost clipping, Opacus's own samplers) on each
  batch, plus two full backward passes for ``grad L_B`` and ``grad L_B'``.

Both estimators draw the same Rademacher vectors, so their values must agree to float precision.
Also, for the cost of measuring any architecture exactly:

* recording: a forward pass inside ``PerSampleNorms.forward`` (hooks on every module and the
  torch-function mode that records parameter uses) against a plain forward pass, as a share of
  ``measure`` (it runs once per side);
* first call: the one-time check of a new model and batch shape (sample-0 probe, per-group
  comparison with autograd) against a steady-state call;
* tied: the same shape with the LM head tied to the embedding (measured by call replay) against
  the untied model.

Prints medians of ``--repeats`` timings and the ratios. Usage::

    python benchmarks/lnp_cost.py [--repeats 3] [--k 4]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F
from opacus.grad_sample.grad_sample_module_fast_gradient_clipping import GradSampleModuleFastGradientClipping
from transformers import LlamaConfig, LlamaForCausalLM

from spectral_reach.lnp import LogitsOnly, PerSampleNorms, measure
from spectral_reach.lnp.hutchinson import rademacher

SHAPES = {
    "simplestories": dict(layers=4, d=96, ff=256, heads=2, vocab=4096, T=128, b=8),
    "cifar5m": dict(layers=3, d=64, ff=256, heads=2, vocab=256, T=1024, b=4),
}


def build(shape: dict, tied: bool = False) -> LogitsOnly:
    cfg = LlamaConfig(
        vocab_size=shape["vocab"],
        hidden_size=shape["d"],
        intermediate_size=shape["ff"],
        num_hidden_layers=shape["layers"],
        num_attention_heads=shape["heads"],
        num_key_value_heads=shape["heads"],
        max_position_embeddings=shape["T"],
        tie_word_embeddings=tied,
    )
    return LogitsOnly(LlamaForCausalLM(cfg))


def seq_ce(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1))


def batch(shape: dict, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(0, shape["vocab"], (shape["b"], shape["T"] + 1), generator=g)
    return ids[:, :-1].contiguous(), ids[:, 1:].contiguous()


def timed(fn, repeats: int):
    fn()  # warm-up
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def opacus_baseline(model, b_train, b_measure, k: int, seed: int) -> dict[str, float]:
    """The LNP components the straightforward way, through Opacus's ghost-clipping module."""
    gen = torch.Generator().manual_seed(seed)
    gsm = GradSampleModuleFastGradientClipping(model, loss_reduction="sum", strict=False, use_ghost_clipping=True)
    params = [p for p in model.parameters() if p.requires_grad]
    out: dict[str, float] = {}
    grads = []
    for tag, (x, y) in (("B", b_train), ("Bp", b_measure)):
        draws = []
        for _ in range(k):
            gsm.zero_grad(set_to_none=True)
            f = gsm(x)
            (f * rademacher(f.shape, gen, f.dtype, f.device)).sum().backward()
            draws.append(float(gsm.get_norm_sample().double().pow(2).sum()))
        out[f"j_sq_{tag}"] = sum(draws) / k
        gsm.disable_hooks()
        f = gsm(x)
        loss = seq_ce(f, y)
        g_out, *g = torch.autograd.grad(loss, [f] + params)
        gsm.enable_hooks()
        grads.append(g)
        out[f"g_sq_{tag}"] = float(g_out.double().pow(2).sum())
    gsm._close()
    delta = sum(float((a.double() * b.double()).sum()) for a, b in zip(*grads))
    out["chi_pos"] = delta / math.sqrt(out["g_sq_B"] * out["g_sq_Bp"] * out["j_sq_B"] * out["j_sq_Bp"])
    return out


def run(name: str, shape: dict, k: int, repeats: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = build(shape)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    b_train, b_measure = batch(shape, g), batch(shape, g)

    def train_step():
        opt.zero_grad(set_to_none=True)
        seq_ce(model(b_train[0]), b_train[1]).backward()
        opt.step()

    t_train, _ = timed(train_step, repeats)
    opt.zero_grad(set_to_none=True)
    seq_ce(model(b_train[0]), b_train[1]).backward()
    train_grad = [p.grad.clone() for p in model.parameters()]

    def ours():
        gen = torch.Generator().manual_seed(7)
        return measure(model, seq_ce, b_train, b_measure, hutchinson=k, train_grad=train_grad, generator=gen)

    t_first = time.perf_counter()
    ours()  # a model seen for the first time: the one-time check runs
    t_first = time.perf_counter() - t_first
    t_ours, rec = timed(ours, repeats)
    t_plain, _ = timed(lambda: model(b_train[0]), repeats)

    def recorded():
        with PerSampleNorms(model) as norms, norms.forward(shape["b"], b_train[0]):
            return model(b_train[0])

    t_recorded, _ = timed(recorded, repeats)
    torch.manual_seed(0)
    tied = build(shape, tied=True)
    t_tied, rec_tied = timed(
        lambda: measure(tied, seq_ce, b_train, b_measure, hutchinson=k, generator=torch.Generator().manual_seed(7)),
        repeats,
    )
    t_untied, _ = timed(
        lambda: measure(model, seq_ce, b_train, b_measure, hutchinson=k, generator=torch.Generator().manual_seed(7)),
        repeats,
    )
    t_base, base = timed(lambda: opacus_baseline(model, b_train, b_measure, k, seed=7), repeats)
    return dict(
        record_share=2 * (t_recorded - t_plain) / t_ours,
        first_over_steady=t_first / t_ours,
        tied_over_untied=t_tied / t_untied,
        chi_pos_tied=rec_tied.chi_pos,
        shape=name,
        train_s=t_train,
        measure_s=t_ours,
        opacus_s=t_base,
        measure_over_train=t_ours / t_train,
        opacus_over_train=t_base / t_train,
        opacus_over_measure=t_base / t_ours,
        chi_pos=rec.chi_pos,
        chi_pos_opacus=base["chi_pos"],
        j_sq_rel_diff=abs(rec.j_sq - base["j_sq_B"]) / base["j_sq_B"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--k", type=int, default=4)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, K = {args.k}, median of {args.repeats}")
    for name, shape in SHAPES.items():
        r = run(name, shape, args.k, args.repeats)
        print(
            f"{r['shape']:>14}: train step {r['train_s'] * 1e3:7.1f} ms | measure {r['measure_s'] * 1e3:7.1f} ms "
            f"= {r['measure_over_train']:4.1f}x train | opacus {r['opacus_s'] * 1e3:7.1f} ms = "
            f"{r['opacus_over_train']:4.1f}x train = {r['opacus_over_measure']:4.1f}x measure | chi_pos "
            f"{r['chi_pos']:.6e} vs {r['chi_pos_opacus']:.6e} (j_sq rel diff {r['j_sq_rel_diff']:.1e})"
        )
        print(
            f"{'':>14}  recording {100 * r['record_share']:4.1f}% of measure | first call "
            f"{r['first_over_steady']:4.2f}x a steady one | tied head {r['tied_over_untied']:4.2f}x untied "
            f"(train_grad recomputed in both; chi_pos tied {r['chi_pos_tied']:.6e})"
        )


if __name__ == "__main__":
    main()

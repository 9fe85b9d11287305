"""Training throughput and the cost of LNP in the loop, measured side by side in one run.

For every size of the chosen config: tokens/s of a training step (forward, backward, AdamW),
the time of one LNP measurement (cross variant, K vectors, the step's gradient reused), their
ratio, and the fraction of a whole run spent measuring under that config's window schedule:

    fraction = n_lnp * t_measure / (steps * t_step + n_lnp * t_measure)

Target: at most 5% with the paper's schedule. On a GPU (``--device cuda``) the step runs in
bf16 autocast and model FLOPs utilisation is reported as ``6 N tokens/s / peak``
(``--peak-tflops``, 989 for an H100 SXM in dense bf16). The measurement runs at each precision
of ``--lnp-precision`` (see :func:`spectral_reach.train.device.lnp_precision`) and each Hutchinson
count of ``--hutchinson`` on the same batches, and each row reports the relative deviation of its
components from the first measurement, so speed and accuracy are read side by side.

    python benchmarks/train_throughput.py                                  # demo sizes, CPU
    python benchmarks/train_throughput.py --config config/paper.yaml --device cuda
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import yaml

from spectral_reach.lnp import LogitsOnly, measure
from spectral_reach.models import llama
from spectral_reach.models.llama import lm_loss
from spectral_reach.train.device import lnp_precision
from spectral_reach.train.forecast import median_seconds
from spectral_reach.train.schedule import lnp_steps

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, repeats: int, device: torch.device) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls after one warm-up call."""
    fn()
    return median_seconds(fn, repeats, device)


COMPONENTS = ("delta", "chi_loss", "chi_net", "chi_pos")


def bench(
    size: dict,
    lm: dict,
    vocab: int,
    device: torch.device,
    repeats: int,
    batch: int | None,
    precisions: list[str],
    ks: list[int],
    profile: bool = False,
) -> list[dict]:
    model = llama.build(size, vocab, lm["context_length"], seed=0).to(device)
    b = batch or lm["batch_size"]
    g = torch.Generator().manual_seed(0)
    x, y, xm, ym = (torch.randint(0, vocab, (b, lm["context_length"] - 1), generator=g).to(device) for _ in range(4))
    params = [p for p in model.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=device.type == "cuda")
    bf16 = device.type == "cuda"

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x).logits
        lm_loss(logits, y).backward()
        opt.step()
        opt.zero_grad(set_to_none=False)

    t_step = timed(step, repeats, device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        lm_loss(model(x).logits, y).backward()
    grads = [p.grad.clone() for p in params]
    n_lnp = len(lnp_steps(lm["steps"], lm["lnp"]["per_decade"], lm["lnp"]["width"]))
    n_params = sum(p.numel() for p in params)
    tokens_s = b * (lm["context_length"] - 1) / t_step
    rows, reference = [], None
    for precision, k in ((p, k) for p in precisions for k in ks):

        def run(precision=precision, k=k):
            gen = torch.Generator(device=device).manual_seed(0)
            with lnp_precision(precision, device):
                return measure(
                    LogitsOnly(model), lm_loss, (x, y), (xm, ym), hutchinson=k, train_grad=grads, generator=gen
                )

        t_measure = timed(run, repeats, device)
        if profile:
            with torch.profiler.profile(
                activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
                if device.type == "cuda"
                else None
            ) as prof:
                run()
            key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
            print(
                f"# profile of one measurement at {precision}\n" + prof.key_averages().table(sort_by=key, row_limit=25)
            )
        rec = run()
        reference = reference or rec
        rows.append(
            {
                "params": n_params,
                "batch": b,
                "tokens_per_s": round(tokens_s),
                "step_s": t_step,
                "lnp_precision": precision,
                "hutchinson": k,
                "measure_s": t_measure,
                "measure_over_step": t_measure / t_step,
                "lnp_steps": n_lnp,
                "steps": lm["steps"],
                "lnp_fraction": n_lnp * t_measure / (lm["steps"] * t_step + n_lnp * t_measure),
                "tflops": 6 * n_params * tokens_s / 1e12,
                **{f"rel_err_{c}": abs(getattr(rec, c) / getattr(reference, c) - 1) for c in COMPONENTS},
            }
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "config" / "config.yaml"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch", type=int, default=None, help="override the config's batch size (memory)")
    p.add_argument("--sizes", nargs="*", default=None, help="only these size names")
    p.add_argument("--peak-tflops", type=float, default=989.0)
    p.add_argument("--profile", action="store_true", help="print the torch.profiler table of one measurement")
    p.add_argument(
        "--lnp-precision",
        nargs="+",
        default=["fp32"],
        choices=["fp32", "tf32", "bf16"],
        help="measurement precisions, the first is the reference for the error columns",
    )
    p.add_argument(
        "--hutchinson",
        type=int,
        nargs="+",
        default=None,
        help="Hutchinson vector counts K to compare (default: the config's); the error columns are "
        "relative to the first precision at the first K, so for other K they include Hutchinson noise",
    )
    a = p.parse_args()
    torch.manual_seed(0)
    cfg = yaml.safe_load(Path(a.config).read_text())
    device = torch.device(a.device)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    for dataset in cfg["datasets"]:
        lm, vocab = cfg["lm"][dataset], cfg["data"][dataset].get("vocab_size", 256)
        for name, size in lm["sizes"].items():
            if a.sizes and name not in a.sizes:
                continue
            shape = {k: v for k, v in size.items() if k not in ("lr", "resources")}
            ks = a.hutchinson or [lm["lnp"]["hutchinson"]]
            for r in bench(shape, lm, vocab, device, a.repeats, a.batch, a.lnp_precision, ks, a.profile):
                if device.type == "cuda":
                    r["mfu"] = r["tflops"] / a.peak_tflops
                print(
                    json.dumps(
                        {
                            "dataset": dataset,
                            "size": name,
                            **{k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in r.items()},
                        }
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main()

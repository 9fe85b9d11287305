"""Cost of counting a batch's loss units (``lnp.units.count_units_tensor``) with a tiled nudge
against one normal draw per output element, side by side in one process.

The count evaluates the loss's gradient at a point near the model's outputs (``_point``). Before,
the nudge drew one normal number per output element; now a block of ``NOISE_BLOCK`` draws, pushed
to ``|z| >= 1``, is repeated over them, each element's nudge scaled by its own size too. For the
showcase's measurement batches (``config/showcase.yaml``: B' of 16 story contexts of 64 tokens
over 1024 tokens, and of 32 images of 1024 pixels over 256 levels), on the showcase's middle Llama
of each task, it prints the median time of a count and of one whole cross-variant measurement
(K = 2, the training gradient reused, as the training loop measures) under each nudge, their
ratios, and that both give the same count and chi_pos.

    python benchmarks/unit_count.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from unittest import mock

import torch

from spectral_reach.lnp import LogitsOnly, measure, units
from spectral_reach.models import llama
from spectral_reach.models.llama import lm_loss

SHAPES = {  # name: (size, vocab, T, B, B')
    "stories m": ({"layers": 2, "hidden": 32, "ff": 96, "heads": 2, "tied": False}, 1024, 64, 16, 16),
    "image twin m": ({"layers": 2, "hidden": 32, "ff": 96, "heads": 2, "tied": False}, 256, 1024, 4, 32),
}


def per_element_point(outputs: torch.Tensor, generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """The nudge before: one normal draw per output element."""
    x = torch.nan_to_num(outputs.detach().to(dtype), nan=0.0, posinf=0.0, neginf=0.0)
    noise = torch.randn(x.shape, generator=generator, dtype=dtype, device="cpu").to(x.device)
    return x + 1e-4 * (x.abs().mean() + 1) * noise


def median_s(f, repeats: int) -> tuple[float, object]:
    out = f()  # warm: the loss's structure is found once per shape, and cached
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def run(size: dict, vocab: int, T: int, b: int, b_measure: int, repeats: int) -> dict[str, float]:
    model = llama.build(size, vocab, T, 0, "sdpa")
    g = torch.Generator().manual_seed(0)
    x, xm = (torch.randint(0, vocab, (n, T), generator=g) for n in (b, b_measure))
    y, ym = x.roll(-1, 1), xm.roll(-1, 1)
    lm_loss(model(x).logits, y).backward()
    grad = [p.grad for p in model.parameters()]
    outputs = model(xm).logits.detach()

    def one_measure():
        gen = torch.Generator().manual_seed(1)
        return measure(LogitsOnly(model), lm_loss, (x, y), (xm, ym), hutchinson=2, train_grad=grad, generator=gen)

    result = {}
    for name, point in (("per element", per_element_point), ("tiled", units._point)):
        with mock.patch.object(units, "_point", point):
            result[f"count {name}"], n = median_s(lambda: units.count_units_tensor(lm_loss, outputs, ym), repeats)
            result[f"measure {name}"], rec = median_s(one_measure, repeats)
        result[f"n {name}"], result[f"chi_pos {name}"] = int(n), rec.chi_pos
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats}")
    for name, shape in SHAPES.items():
        r = run(*shape, repeats=args.repeats)
        print(
            f"{name:>13}: count {r['count per element'] * 1e3:6.1f} -> {r['count tiled'] * 1e3:6.1f} ms "
            f"({r['count tiled'] / r['count per element']:.2f}x) | measure {r['measure per element'] * 1e3:6.1f} -> "
            f"{r['measure tiled'] * 1e3:6.1f} ms ({r['measure tiled'] / r['measure per element']:.2f}x) | units "
            f"{r['n per element']} vs {r['n tiled']} | chi_pos {r['chi_pos per element']:.9e} vs {r['chi_pos tiled']:.9e}"
        )


if __name__ == "__main__":
    main()

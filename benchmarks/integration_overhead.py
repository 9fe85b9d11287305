"""What the Trainer callback adds to steps it does not measure (issue 26: within 2%).

A small Llama trained by the Hugging Face Trainer, once plain and once with ``LNPCallback`` whose
schedule measures step 0 only; the median wall time of steps 1..N (a timing callback on
``on_step_begin``/``on_step_end``, after the optimizer step) side by side in one run, alternating
the two runs ``--rounds`` times (and which goes first).

    python benchmarks/integration_overhead.py [--steps 60] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainerCallback, TrainingArguments

from spectral_reach.lnp.integrations.hf import LNPCallback


class StepTimes(TrainerCallback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.t = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step > 1:  # step 0 (measured with the callback) and warm-up left out
            self.times.append(time.perf_counter() - self.t)


def run(steps: int, with_lnp: bool) -> float:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    ids = torch.randint(512, (steps * 8, 64), generator=torch.Generator().manual_seed(0))
    data = [{"input_ids": x, "labels": x} for x in ids]
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            max_steps=steps,
            per_device_train_batch_size=8,
            report_to=[],
            save_strategy="no",
            use_cpu=True,
            disable_tqdm=True,
            logging_steps=10**6,
        )
        trainer = Trainer(model=LlamaForCausalLM(cfg), args=args, train_dataset=data)
        timer = StepTimes()
        trainer.add_callback(timer)
        if with_lnp:
            LNPCallback({"input_ids": ids[:8], "labels": ids[:8]}, f"{out}/lnp.parquet", every=10**6).attach(trainer)
        trainer.train()
    return statistics.median(timer.times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--rounds", type=int, default=4)
    a = p.parse_args()
    plain, lnp = [], []
    for r in range(a.rounds):  # alternating which goes first: the second run of a pair finds warmer caches
        for with_lnp in (False, True) if r % 2 == 0 else (True, False):
            (lnp if with_lnp else plain).append(run(a.steps, with_lnp))
    p_s, l_s = statistics.median(plain), statistics.median(lnp)
    print(
        f"unmeasured step, plain Trainer {p_s * 1e3:.2f} ms, with LNPCallback {l_s * 1e3:.2f} ms: "
        f"{l_s / p_s:.3f}x (target <= 1.02x)"
    )


if __name__ == "__main__":
    main()

"""What the callbacks add to steps they do not measure (issue 26: within 2%).

A small Llama trained by the Hugging Face Trainer, and a small next-token model by PyTorch
Lightning, each once plain and once with its ``LNPCallback`` whose schedule measures step 0 only;
the median wall time of the later steps (a timing callback around each step) side by side in one
run, alternating the two runs ``--rounds`` times (and which goes first).

    python benchmarks/integration_overhead.py [--steps 60] [--rounds 4]
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
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
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


def run_lightning(steps: int, with_lnp: bool) -> float:
    import lightning.pytorch as pl
    import torch.nn.functional as F

    from spectral_reach.lnp.integrations.lightning import LNPCallback as LightningLNP

    loss_fn = lambda o, y: F.cross_entropy(o.flatten(0, 1), y.flatten())  # noqa: E731

    class LM(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Embedding(512, 256), torch.nn.Linear(256, 1024), torch.nn.GELU(), torch.nn.Linear(1024, 512)
            )

        def forward(self, ids):
            return self.net(ids)

        def training_step(self, batch, batch_idx):
            return loss_fn(self(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-3)

    class Times(pl.Callback):
        def __init__(self):
            self.times = []

        def on_train_batch_start(self, trainer, *args):
            self.t = time.perf_counter()

        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step > 2:
                self.times.append(time.perf_counter() - self.t)

    torch.manual_seed(0)
    ids = torch.randint(512, (steps * 8, 65), generator=torch.Generator().manual_seed(0))
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(ids[:, :-1], ids[:, 1:]), batch_size=8)
    timer = Times()
    with tempfile.TemporaryDirectory() as out:
        callbacks = [timer]
        if with_lnp:
            held_out = (ids[:8, :-1], ids[:8, 1:])
            callbacks.append(LightningLNP(loss_fn, held_out, f"{out}/lnp.parquet", every=10**6))
        trainer = pl.Trainer(
            max_steps=steps,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=out,
            callbacks=callbacks,
        )
        trainer.fit(LM(), data)
    return statistics.median(timer.times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--rounds", type=int, default=4)
    a = p.parse_args()
    for name, fn in (("Hugging Face Trainer", run), ("Lightning", run_lightning)):
        plain, lnp = [], []
        for r in range(a.rounds):  # alternating which goes first: the second run of a pair finds warmer caches
            for with_lnp in (False, True) if r % 2 == 0 else (True, False):
                (lnp if with_lnp else plain).append(fn(a.steps, with_lnp))
        p_s, l_s = statistics.median(plain), statistics.median(lnp)
        print(
            f"{name}: unmeasured step, plain {p_s * 1e3:.2f} ms, with LNPCallback {l_s * 1e3:.2f} ms: "
            f"{l_s / p_s:.3f}x (target <= 1.02x)"
        )


if __name__ == "__main__":
    main()

"""LNP inside a Hugging Face Trainer: a tiny Llama, a few steps on CPU, two micro-batches a step.

python examples/hf_trainer.py [OUT_DIR]      # writes OUT_DIR/lnp.parquet and prints it
"""

import sys
import tempfile

import pandas as pd
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

from spectral_reach.lnp.integrations.hf import LNPCallback

out = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()
torch.manual_seed(0)
config = LlamaConfig(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=2,
    max_position_embeddings=32,
)
model = LlamaForCausalLM(config)


def stories(n, seed):  # sequences that count up: a pattern the model learns in a few steps
    g = torch.Generator().manual_seed(seed)
    ids = (torch.randint(64, (n, 1), generator=g) + torch.arange(16)) % 64
    return [{"input_ids": x, "labels": x} for x in ids]


held_out = stories(8, 1)
measure_batch = {k: torch.stack([s[k] for s in held_out]) for k in ("input_ids", "labels")}
args = TrainingArguments(
    output_dir=out,
    max_steps=12,
    per_device_train_batch_size=4,
    gradient_accumulation_steps=2,
    learning_rate=3e-3,
    logging_steps=3,
    report_to=[],
    save_strategy="no",
    use_cpu=True,
)
trainer = Trainer(model=model, args=args, train_dataset=stories(96, 0))
LNPCallback(measure_batch, f"{out}/lnp.parquet", every=3, hutchinson=4).attach(trainer)
trainer.train()
if trainer.is_world_process_zero():  # under torchrun every rank measured the global batch; rank 0 wrote it
    print(pd.read_parquet(f"{out}/lnp.parquet")[["step", "loss", "chi_loss", "chi_net", "chi_pos", "n_units"]])

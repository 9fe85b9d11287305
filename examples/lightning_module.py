"""LNP inside PyTorch Lightning: a tiny next-token model, a few steps on CPU, two micro-batches a step.

python examples/lightning_module.py [OUT_DIR]      # writes OUT_DIR/lnp.parquet and prints it
"""

import sys
import tempfile

import lightning.pytorch as pl
import pandas as pd
import torch
import torch.nn.functional as F

from spectral_reach.lnp.integrations.lightning import LNPCallback

out = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp()


def loss_fn(logits, targets):  # mean over tokens
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


class TinyLM(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Embedding(64, 32), torch.nn.Linear(32, 64), torch.nn.GELU(), torch.nn.Linear(64, 64)
        )

    def forward(self, ids):
        return self.net(ids)

    def training_step(self, batch, batch_idx):
        ids, targets = batch
        return loss_fn(self(ids), targets)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=3e-3)


def counting(n, seed):  # sequences that count up: the next token is the current one plus 1
    g = torch.Generator().manual_seed(seed)
    seq = (torch.randint(64, (n, 1), generator=g) + torch.arange(17)) % 64
    return seq[:, :-1], seq[:, 1:]


torch.manual_seed(0)
data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*counting(96, 0)), batch_size=4)
callback = LNPCallback(loss_fn, counting(8, 1), f"{out}/lnp.parquet", every=3, hutchinson=4)
trainer = pl.Trainer(
    max_steps=12,
    accumulate_grad_batches=2,
    accelerator="cpu",
    logger=False,
    callbacks=[callback],
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
    default_root_dir=out,
)
trainer.fit(TinyLM(), data)
print(pd.read_parquet(f"{out}/lnp.parquet")[["step", "loss", "chi_loss", "chi_net", "chi_pos", "n_units"]])

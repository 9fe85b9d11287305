"""The Lightning callback under data parallelism (tests/test_integrations_lightning.py): the
example's tiny model trained by ``one`` process at batch 8, or by 2 CPU processes at batch 4 each
under ``ddp`` (DDPStrategy) or ``fsdp2`` (ModelParallelStrategy, ``fully_shard`` on each Linear and
the root in ``configure_model``). Every step's global batch is the same 8 samples in each mode.
``python tests/lightning_parallel.py MODE OUT``: writes OUT/lnp.parquet and, from rank 0,
OUT/kinds.json (the trained module's and a weight's type)."""

from __future__ import annotations

import json
import os
import sys

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.strategies import DDPStrategy, ModelParallelStrategy
from torch.distributed.fsdp import fully_shard

from spectral_reach.lnp.integrations.lightning import LNPCallback

MODE, OUT = sys.argv[1], sys.argv[2]


def loss_fn(logits, targets):
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


class TinyLM(pl.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Embedding(64, 32), torch.nn.Linear(32, 64), torch.nn.GELU(), torch.nn.Linear(64, 64)
        )

    def configure_model(self):
        if MODE == "fsdp2":
            mesh = self.device_mesh["data_parallel"]
            for layer in (self.net[1], self.net[3]):
                fully_shard(layer, mesh=mesh)
            fully_shard(self.net, mesh=mesh)

    def forward(self, ids):
        return self.net(ids)

    def training_step(self, batch, batch_idx):
        return loss_fn(self(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=3e-3)

    def train_dataloader(self):
        """Rank r reads samples r, r + 2, ... in order, so step s's global batch is samples 8s..8s+7 in
        every mode (Lightning's own distributed sampler would shuffle)."""
        data = torch.utils.data.TensorDataset(*counting(96, 0))
        world = self.trainer.world_size
        sampler = torch.utils.data.DistributedSampler(data, world, self.global_rank, shuffle=False)
        return torch.utils.data.DataLoader(data, batch_size=8 // world, sampler=sampler)


def counting(n, seed):  # sequences that count up: the next token is the current one plus 1
    g = torch.Generator().manual_seed(seed)
    seq = (torch.randint(64, (n, 1), generator=g) + torch.arange(17)) % 64
    return seq[:, :-1], seq[:, 1:]


# B' is sharded as B is: each rank measures its rows of the same 8 (Lightning starts rank 1 with LOCAL_RANK set)
rank, world = int(os.environ.get("LOCAL_RANK", 0)), 1 if MODE == "one" else 2
measure_batch = tuple(t[rank::world] for t in counting(8, 1))
strategy = {
    "one": "auto",
    "ddp": DDPStrategy(process_group_backend="gloo"),
    "fsdp2": ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1),
}[MODE]
trainer = pl.Trainer(
    max_steps=6,
    accelerator="cpu",
    devices=1 if MODE == "one" else 2,
    strategy=strategy,
    logger=False,
    use_distributed_sampler=False,
    callbacks=[LNPCallback(loss_fn, measure_batch, f"{OUT}/lnp.parquet", every=2, hutchinson=None)],
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
    default_root_dir=OUT,
)
trainer.fit(TinyLM())
if trainer.is_global_zero:
    net = trainer.lightning_module.net
    kinds = {"module": type(net).__name__, "weight": type(net[1].weight).__name__}
    with open(f"{OUT}/kinds.json", "w") as f:
        json.dump(kinds, f)

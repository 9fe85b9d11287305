"""One rank of the data-parallel measurement test (tests/test_lnp_distributed.py), run by torchrun:
measures its shard of B and B' through DistributedDataParallel (gloo, CPU, float64) and writes the
records. ``python -m torch.distributed.run --standalone --nproc-per-node 2 tests/ddp_measure.py OUT``"""

from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from spectral_reach.lnp import measure

B, B_MEASURE, T, VOCAB = 8, 6, 5, 20


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Embedding(VOCAB, 8), torch.nn.Linear(8, 8), torch.nn.Tanh(), torch.nn.Linear(8, VOCAB)
    ).double()


def batches() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return tuple(
        (torch.randint(VOCAB, (n, T), generator=g), torch.randint(VOCAB, (n, T), generator=g)) for n in (B, B_MEASURE)
    )


def loss_fn(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(outputs.flatten(0, 1), targets.flatten())


def records(net: torch.nn.Module, batch, other) -> dict:
    """Cross (with the step's gradient, split over two parameter groups, with an update) and self
    (without), exact and with 3 Hutchinson vectors."""
    out = {}
    params = [p for p in net.parameters() if p.requires_grad]
    for k in (None, 3):
        net.zero_grad()
        loss_fn(net(batch[0]), batch[1]).backward()
        grads = [p.grad.clone() for p in params]
        cross = measure(
            net, loss_fn, batch, other, hutchinson=k, train_grad=grads, generator=torch.Generator().manual_seed(7),
            groups={"hidden": ["1.weight", "1.bias"]}, update=grads,
        )  # fmt: skip
        own = measure(net, loss_fn, batch, hutchinson=k, generator=torch.Generator().manual_seed(7))
        split = {f"{r['group']}.{key}": v for r in cross.group_rows() for key, v in r.items() if key != "group"}
        out[str(k)] = {"cross": {**cross.as_row(), **split}, "self": own.as_row()}
    return out


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    (x, y), (xm, ym) = batches()
    mine = lambda t: t.chunk(world)[rank]  # noqa: E731
    result = records(DistributedDataParallel(model()), (mine(x), mine(y)), (mine(xm), mine(ym)))
    with open(f"{sys.argv[1]}/rank{rank}.json", "w") as f:
        json.dump(result, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

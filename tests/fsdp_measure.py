"""One rank of the FSDP2 measurement test (tests/test_lnp_distributed.py), run by torchrun: the
data-parallel test's model sharded with ``fully_shard`` (``nested``: each layer and the root, as
FSDP2 is used; ``root``: the root alone), each rank measuring its shard of B and B' with the
step's sharded gradients. ``python -m torch.distributed.run --standalone --nproc-per-node 2
tests/fsdp_measure.py OUT nested``"""

from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist
from ddp_measure import batches, model, records
from torch.distributed.fsdp import fully_shard


def sharded(how: str) -> torch.nn.Module:
    net = model()
    if how == "nested":
        for layer in net:
            if any(p.requires_grad for p in layer.parameters()):
                fully_shard(layer)
    fully_shard(net)
    return net


def main() -> None:
    out, how = sys.argv[1], sys.argv[2]
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    (x, y), (xm, ym) = batches()
    mine = lambda t: t.chunk(world)[rank]  # noqa: E731
    net = sharded(how)
    result = records(net, (mine(x), mine(y)), (mine(xm), mine(ym)))
    # measure leaves FSDP as it found it: sharded parameters, sharded gradients, and training goes on
    params = list(net.parameters())
    result["left_sharded"] = all(type(p).__name__ == "DTensor" for p in params) and all(
        type(p.grad).__name__ == "DTensor" for p in params
    )
    net.zero_grad()
    torch.nn.functional.cross_entropy(net(mine(x)).flatten(0, 1), mine(y).flatten()).backward()
    result["trains_after"] = all(p.grad is not None for p in params)
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump(result, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

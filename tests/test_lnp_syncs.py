"""A measurement reads its results from the device once: no host sync per probe vector, per side
or per check (they stall a GPU's queue between the probe backwards). Counted on CPU with a
dispatch mode: every op that reads a value on the host or has a data-dependent shape."""

from __future__ import annotations

from collections import Counter

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from spectral_reach.lnp import measure

SYNCS = {"_local_scalar_dense", "item", "is_nonzero", "equal", "nonzero", "masked_select", "unique", "allclose"}


class CountSyncs(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.seen: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name.split("::")[-1]
        if name in SYNCS:
            self.seen[name] += 1
        return func(*args, **(kwargs or {}))


def count(fn) -> Counter:
    with CountSyncs() as counter:
        fn()
    return counter.seen


def test_a_steady_measurement_syncs_at_most_once_whatever_k():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(30, 16), torch.nn.GELU(), torch.nn.Linear(16, 30))
    loss_fn = lambda o, y: F.cross_entropy(o.flatten(0, 1), y.flatten())  # noqa: E731
    b, other = [(torch.randint(30, (4, 8)), torch.randint(30, (4, 8))) for _ in range(2)]
    first = count(lambda: measure(model, loss_fn, b, other, hutchinson=8))  # the once-per-shape checks
    assert sum(first.values()) > 1  # the counter sees them
    for k in (1, 8):
        steady = count(lambda k=k: measure(model, loss_fn, b, other, hutchinson=k))
        assert sum(steady.values()) <= 1, steady

"""The normalised chi_loss and chi_net do not depend on batch size; the raw ones do."""

import numpy as np
import torch
from models import EmbedLinear, seq_ce

from spectral_reach.lnp import measure


def mean_components(model, batch_size: int, repeats: int, seed: int) -> dict[str, float]:
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(repeats):
        ids = torch.randint(1, 11, (batch_size, 6), generator=g)
        tgt = torch.randint(0, 7, (batch_size, 6), generator=g)
        r = measure(model, seq_ce, (ids, tgt), hutchinson=None)
        rows.append((r.chi_loss, r.chi_net, r.chi_loss_raw, r.chi_net_raw))
    return dict(zip(["chi_loss", "chi_net", "chi_loss_raw", "chi_net_raw"], np.mean(rows, axis=0)))


def test_four_times_the_batch_keeps_normalised_components():
    torch.manual_seed(0)
    model = EmbedLinear().double()
    small = mean_components(model, 4, repeats=24, seed=1)
    large = mean_components(model, 16, repeats=6, seed=2)
    assert abs(large["chi_loss"] / small["chi_loss"] - 1) < 0.1
    assert abs(large["chi_net"] / small["chi_net"] - 1) < 0.1
    # the raw forms scale with batch size (1/sqrt(n) and sqrt(n) per batch, squared in self)
    assert 3.0 < small["chi_loss_raw"] / large["chi_loss_raw"] < 5.3
    assert 3.0 < large["chi_net_raw"] / small["chi_net_raw"] < 5.3

"""Probe vectors for ``||J_i||_F^2``.

Hutchinson: ``||J_i||_F^2 = E_v ||J_i^T v||^2`` for ``v`` with i.i.d. Rademacher entries (+-1),
estimated by ``(1/K) sum_k ||J_i^T v_k||^2``. Entries are independent across samples, output
coordinates and draws. The exact alternative sums ``||J_i^T e_d||^2`` over every output
coordinate ``d`` (one backward pass per coordinate), for small outputs.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

_SIGN_TABLES: dict[tuple[torch.device, torch.dtype], Tensor] = {}


def _sign_table(device: torch.device, dtype: torch.dtype) -> Tensor:
    """Row ``x`` holds the eight bits of the byte ``x`` as signs: ``2 * bit - 1``."""
    key = (device, dtype)
    if key not in _SIGN_TABLES:
        bits = (torch.arange(256).unsqueeze(1) >> torch.arange(8)) & 1
        _SIGN_TABLES[key] = (bits * 2 - 1).to(device=device, dtype=dtype)
    return _SIGN_TABLES[key]


def rademacher(shape: torch.Size, generator: torch.Generator, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A tensor of i.i.d. +-1 drawn from ``generator`` (on the generator's device), moved to ``device``.

    Each uniform random byte gives eight signs through a lookup table: drawing one number per
    sign was the slowest part of a measurement on CPU for language-model outputs (``b T V``
    signs per vector).
    """
    numel = shape.numel()
    random_bytes = torch.randint(
        0, 256, ((numel + 7) // 8,), generator=generator, device=generator.device, dtype=torch.uint8
    ).to(device)
    return _sign_table(device, dtype)[random_bytes.long()].reshape(-1)[:numel].reshape(shape)


def probe_count(shape: torch.Size, hutchinson: int | None) -> int:
    """Backward passes per forward: K, or the number of output coordinates per sample."""
    return shape[1:].numel() if hutchinson is None else hutchinson


def probe_vectors(
    shape: torch.Size,
    hutchinson: int | None,
    generator: torch.Generator,
    dtype: torch.dtype,
    device: torch.device,
    rows: tuple[int, int] | None = None,
) -> Iterator[Tensor]:
    """K Rademacher vectors shaped like the output, or (``hutchinson=None``) every basis vector.

    In the exact mode the basis vector ``e_d`` is set for all samples at once: samples do not
    interact, so one backward pass gives ``||J_i^T e_d||^2`` for every ``i``. ``rows =
    (offset, total)``: this batch is rows ``offset:offset + b`` of a global batch of ``total``
    (one rank's shard): each vector is drawn for the global batch and sliced, so a sample meets the
    vector it would meet in one process.
    """
    if hutchinson is None:
        b, width = shape[0], shape[1:].numel()
        for d in range(width):
            v = torch.zeros(b, width, dtype=dtype, device=device)
            v[:, d] = 1
            yield v.reshape(shape)
    else:
        offset, total = rows if rows is not None else (0, shape[0])
        for _ in range(hutchinson):
            yield rademacher(torch.Size((total, *shape[1:])), generator, dtype, device).narrow(0, offset, shape[0])

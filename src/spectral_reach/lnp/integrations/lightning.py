"""LNP in PyTorch Lightning: a ``Callback`` that measures scheduled optimizer steps.

    trainer = L.Trainer(max_steps=1000, callbacks=[LNPCallback(loss_fn, held_out, "lnp.parquet", every=100)])
    trainer.fit(module, data)   # lnp.parquet: one row per measured step; lnp/* to the Trainer's loggers

``split(batch) -> (inputs, targets)`` reads a training batch (default: the batch is that pair) and
``forward(module, inputs) -> outputs`` runs the model (default: ``module(inputs)``); ``loss_fn``
is the mean loss the training step uses. At a scheduled step the callback keeps the step's
micro-batches (``accumulate_grad_batches``) and, in Lightning's ``on_before_optimizer_step``
(gradients accumulated and unscaled, not yet clipped), measures them together against
``measure_batch`` with the step's own gradient, in eval mode (dropout off); the final step always.
Each measurement goes to every logger at its own step (``lnp/*``; with ``groups``, per parameter
group ``lnp/<group>/chi_net`` and ``lnp/<group>/chi_pos``, rows in ``<path stem>_groups.parquet``). Unmeasured steps cost
a Python check per batch. Under DDP and FSDP2 (``ModelParallelStrategy``) every rank gets the global
components (:mod:`..distributed`) from its own shard of ``measure_batch``; rank 0 writes the table at
every checkpoint and at the end. BatchNorm is refused (in eval mode it
is another function than the one the step trains).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from ..measure import measure
from .common import Schedule, Table, concat, refuse_batchnorm


class _Forward(nn.Module):
    """``forward(module, inputs)`` as a module whose parameters are the LightningModule's."""

    def __init__(self, module: nn.Module, forward: Callable[[nn.Module, Any], Tensor]) -> None:
        super().__init__()
        self.module, self.run = module, forward

    @property
    def cache_owner(self) -> nn.Module:
        return self.module

    def forward(self, inputs: Any) -> Tensor:
        return self.run(self.module, inputs)


class LNPCallback(pl.Callback):
    """Measure the LNP components of scheduled optimizer steps (module docstring)."""

    def __init__(
        self,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        measure_batch: Any,
        path: str | Path,
        *,
        every: int | None = None,
        windows: tuple[int, int] | None = None,
        hutchinson: int | None = 4,
        split: Callable[[Any], tuple[Any, Tensor]] = tuple,
        forward: Callable[[nn.Module, Any], Tensor] = lambda module, inputs: module(inputs),
        seed: int = 0,
        groups: Mapping[str, list[str]] | str | None = None,
    ) -> None:
        self.schedule, self.table = Schedule(every, windows), Table(path)
        self.loss_fn, self.measure_batch, self.hutchinson = loss_fn, measure_batch, hutchinson
        self.split, self.run, self.seed, self.groups = split, forward, seed, groups
        self.batches: list[Any] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        refuse_batchnorm(pl_module, "LNPCallback")
        total = trainer.max_steps if trainer.max_steps > 0 else trainer.estimated_stepping_batches
        self.schedule.start(int(total))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step in self.schedule:
            self.batches.append(self.split(batch))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self.batches:
            return
        inputs, targets = concat([b[0] for b in self.batches]), concat([b[1] for b in self.batches])
        self.batches = []
        device = pl_module.device
        other_inputs, other_targets = self.split(self.measure_batch)
        move = lambda x: x.to(device) if isinstance(x, Tensor) else x  # noqa: E731
        params = [p for p in pl_module.parameters() if p.requires_grad]
        reuse = all(p.grad is not None for p in params)  # accumulated and unscaled, not yet clipped
        was_training = pl_module.training
        pl_module.eval()
        try:
            rec = measure(
                _Forward(pl_module, self.run),
                self.loss_fn,
                (inputs, targets),
                (move(other_inputs), move(other_targets)),
                hutchinson=self.hutchinson,
                train_grad=[p.grad for p in params] if reuse else None,
                generator=torch.Generator(device=device).manual_seed(self.seed * 1_000_003 + trainer.global_step),
                groups=self.groups,
            )
        finally:
            pl_module.train(was_training)
        metrics = self.table.add(trainer.global_step, self.schedule.window_of.get(trainer.global_step), rec)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if trainer.is_global_zero:
            self.table.write()

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self.table.write()

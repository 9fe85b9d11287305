"""LNP in a Hugging Face ``Trainer``: a ``TrainerCallback`` that measures scheduled steps.

    trainer = Trainer(model=model, args=args, train_dataset=train, ...)
    LNPCallback(measure_batch=held_out, path="lnp.parquet", every=100).attach(trainer)
    trainer.train()        # lnp.parquet: one row per measured step; lnp/* in the Trainer's logs

At a scheduled step (``every`` N optimizer steps, or the paper's log-spaced windows over
``max_steps``; the final step always) the callback keeps the inputs of the step's forward passes (every micro-batch under
gradient accumulation), and before the optimizer step measures ``B`` = those micro-batches
together against ``B'`` = ``measure_batch`` (``labels`` are the targets, the model's logits the
outputs), in eval mode (dropout off), with the step's own gradient. The Trainer clips gradients
before its ``on_pre_optimizer_step`` event and a GradScaler (fp16) keeps them scaled until its
step, so with ``max_grad_norm > 0`` or fp16 the gradient of ``B`` is recomputed instead (one
backward pass; clipping would scale ``delta``, and ``chi_pos`` with it, by the clipping factor).
Steps that are not measured cost a Python check at the start and the end of the step. A step is
an optimizer step, so no measurement falls in the middle of gradient accumulation. BatchNorm is
refused: in eval mode it is another function than the one the step trains.

Each measurement is logged through ``trainer.log`` at its own step (``attach`` keeps the trainer):
into ``trainer.state.log_history`` and every reporting integration (TensorBoard, W&B, MLflow), as
``lnp/chi_loss``, ``lnp/chi_net``, ``lnp/chi_pos``, ``lnp/delta`` and, with ``groups``, per group
``lnp/<group>/chi_net`` and ``lnp/<group>/chi_pos`` (their rows in ``<path stem>_groups.parquet``).

Under ``accelerate`` / ``torchrun`` every rank measures its shard and gets the global components
(:mod:`..distributed`); pass each rank its own shard of ``B'`` and seed ``seed`` alike everywhere.
The table is written by rank 0 at every checkpoint save and at the end of training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import TrainerCallback

from ..measure import LogitsOnly, measure
from .common import Schedule, Table, concat, refuse_batchnorm


def causal_lm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Hugging Face's causal-LM loss: the labels are the inputs, shifted inside; -100 is ignored."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)


class LNPCallback(TrainerCallback):
    """Measure the LNP components of scheduled optimizer steps (module docstring)."""

    def __init__(
        self,
        measure_batch: Mapping[str, Tensor],
        path: str | Path,
        *,
        every: int | None = None,
        windows: tuple[int, int] | None = None,
        hutchinson: int | None = 4,
        loss_fn: Callable[[Tensor, Tensor], Tensor] = causal_lm_loss,
        labels: str = "labels",
        seed: int = 0,
        groups: Mapping[str, list[str]] | str | None = None,
    ) -> None:
        self.schedule, self.table = Schedule(every, windows), Table(path)
        self.measure_batch, self.hutchinson = dict(measure_batch), hutchinson
        self.loss_fn, self.labels, self.seed, self.groups = loss_fn, labels, seed, groups
        self.batches: list[dict[str, Tensor]] | None = None
        self.handle = None
        self.trainer = None

    def attach(self, trainer) -> "LNPCallback":
        """Add to ``trainer``, which then logs each measurement at its own step."""
        trainer.callback_handler.callbacks.insert(0, self)
        self.trainer = trainer
        return self

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.trainer is None:
            raise ValueError(
                "LNPCallback logs each measurement at its own step through the Trainer: add it with "
                "LNPCallback(...).attach(trainer), not Trainer(callbacks=[...])"
            )
        refuse_batchnorm(model, "LNPCallback")
        self.schedule.start(state.max_steps)
        self.handle = model.register_forward_pre_hook(self._keep, with_kwargs=True)

    def _keep(self, module, args, kwargs):
        if self.batches is not None and module.training and torch.is_grad_enabled():
            self.batches.append({k: v for k, v in kwargs.items() if isinstance(v, Tensor) and v.dim() > 0})

    def on_step_begin(self, args, state, control, **kwargs):
        self.batches = [] if state.global_step in self.schedule else None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self.batches is None:
            return
        batches, self.batches = self.batches, None
        if not batches:
            return
        whole = concat(batches)
        targets = whole.pop(self.labels)
        device = next(model.parameters()).device
        other = {k: v.to(device) for k, v in self.measure_batch.items()}
        other_targets = other.pop(self.labels)
        params = [p for p in model.parameters() if p.requires_grad]
        reuse = args.max_grad_norm in (None, 0) and not args.fp16 and all(p.grad is not None for p in params)
        was_training = model.training
        model.eval()
        try:
            rec = measure(
                LogitsOnly(model),
                self.loss_fn,
                (whole, targets),
                (other, other_targets),
                hutchinson=self.hutchinson,
                train_grad=[p.grad for p in params] if reuse else None,
                generator=torch.Generator(device=device).manual_seed(self.seed * 1_000_003 + state.global_step),
                groups=self.groups,
            )
        finally:
            model.train(was_training)
        window = self.schedule.window_of.get(state.global_step)
        # at this step: global_step counts the steps before this one, as the table's ``step`` does
        self.trainer.log(self.table.add(state.global_step, window, rec))

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.table.write()

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.table.write()
        if self.handle is not None:
            self.handle.remove()

"""LNP in a Hugging Face ``Trainer``: a ``TrainerCallback`` that measures scheduled steps.

    trainer = Trainer(model=model, args=args, train_dataset=train, ...)
    LNPCallback(measure_batch=held_out, path="lnp.parquet", every=100).attach(trainer)
    trainer.train()        # lnp.parquet: one row per measured step; lnp/* in the Trainer's logs

At a scheduled step (``every`` N optimizer steps, or the paper's log-spaced windows over
``max_steps``) the callback keeps the inputs of the step's forward passes (every micro-batch under
gradient accumulation), and before the optimizer step measures ``B`` = those micro-batches
together against ``B'`` = ``measure_batch`` (``labels`` are the targets, the model's logits the
outputs), in eval mode (dropout off), with the step's own gradient. The Trainer clips gradients
before its ``on_pre_optimizer_step`` event and a GradScaler (fp16) keeps them scaled until its
step, so with ``max_grad_norm > 0`` or fp16 the gradient of ``B`` is recomputed instead (one
backward pass; clipping would scale ``delta``, and ``chi_pos`` with it, by the clipping factor).
Steps that are not measured cost a Python check at the start and the end of the step. A step is
an optimizer step, so no measurement falls in the middle of gradient accumulation. BatchNorm is
refused: in eval mode it is another function than the one the step trains.

Under ``accelerate`` / ``torchrun`` every rank measures its shard and gets the global components
(:mod:`..distributed`); pass each rank its own shard of ``B'`` and seed ``seed`` alike everywhere.
The table is written by rank 0 at every checkpoint save and at the end of training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import TrainerCallback

from ..measure import LogitsOnly, measure
from ..windows import log_windows, step_windows


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
    ) -> None:
        if (every is None) == (windows is None):
            raise ValueError("give one schedule: every=N optimizer steps, or windows=(per_decade, width)")
        self.measure_batch, self.path = dict(measure_batch), Path(path)
        self.every, self.windows, self.hutchinson = every, windows, hutchinson
        self.loss_fn, self.labels, self.seed = loss_fn, labels, seed
        self.rows: list[dict[str, Any]] = []
        self.window_of: dict[int, int] = {}
        self.batches: list[dict[str, Tensor]] | None = None
        self.latest: dict[str, float] | None = None
        self.handle = None

    def attach(self, trainer) -> "LNPCallback":
        """Add to ``trainer`` before its reporting callbacks, so that they log the components too."""
        trainer.callback_handler.callbacks.insert(0, self)
        return self

    def scheduled(self, step: int) -> bool:
        """Whether optimizer step ``step`` (0-based) is measured."""
        return step % self.every == 0 if self.every else step in self.window_of

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        norms = [n for n, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if norms:
            raise ValueError(
                f"LNPCallback: module '{norms[0]}' is a BatchNorm, which computes another function in eval mode "
                "(running statistics) than in the training step (batch statistics, which mix the samples), so "
                "no measurement describes this training. Use LayerNorm or GroupNorm, or measure a custom loop."
            )
        if self.windows:
            self.window_of = step_windows(log_windows(state.max_steps, *self.windows))
        self.handle = model.register_forward_pre_hook(self._keep, with_kwargs=True)

    def _keep(self, module, args, kwargs):
        if self.batches is not None and module.training and torch.is_grad_enabled():
            self.batches.append({k: v for k, v in kwargs.items() if isinstance(v, Tensor) and v.dim() > 0})

    def on_step_begin(self, args, state, control, **kwargs):
        self.batches = [] if self.scheduled(state.global_step) else None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self.batches is None:
            return
        batches, self.batches = self.batches, None
        if not batches:
            return
        keys = [k for k in batches[0] if all(k in b for b in batches)]
        whole = {k: torch.cat([b[k] for b in batches]) for k in keys}
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
            )
        finally:
            model.train(was_training)
        row = {"step": state.global_step, "window": self.window_of.get(state.global_step), **rec.as_row()}
        self.rows.append(row)
        self.latest = {f"lnp/{k}": row[k] for k in ("chi_loss", "chi_net", "chi_pos", "delta")}

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.latest and logs is not None:
            logs.update(self.latest)
            self.latest = None

    def write(self, state) -> None:
        if state.is_world_process_zero and self.rows:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            pd.DataFrame(self.rows).to_parquet(tmp, index=False)
            tmp.replace(self.path)

    def on_save(self, args, state, control, **kwargs):
        self.write(state)

    def on_train_end(self, args, state, control, **kwargs):
        self.write(state)
        if self.handle is not None:
            self.handle.remove()

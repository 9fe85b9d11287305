"""Language models and linear probes on token streams (paper App. B.2.1-B.2.2, C.1).

The loop is :func:`.loop.run`: next-token cross-entropy over every predicted token, one pass over
the training contexts in an order fixed by ``data_seed``, LNP with K Hutchinson vectors and ``B'``
drawn from the fixed validation contexts. A probe (``trainable: head``) trains a fresh LM head on a
frozen backbone, saved or freshly initialised; on a tied backbone the head is untied first.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data import Contexts, DataError, FixedSet, TrainOrder, read_meta
from ..errors import ConfigError
from ..models import llama
from ..models.init import INITS, reinit
from ..models.llama import lm_loss
from . import optimizers
from .device import pick_device
from .loop import Task, run
from .optimizers import OPTIMIZERS
from .spec import BaseSpec


@dataclass(frozen=True, kw_only=True)
class RunSpec(BaseSpec):
    """Everything that shapes one language-model or probe run; built from the rule's params."""

    vocab_size: int
    context_length: int
    trainable: str = "all"
    optimizer: dict[str, Any] | None = None  # None: AdamW (:mod:`.optimizers`)
    init: str = "default"  # :mod:`..models.init`, or mup (:mod:`..models.llama_mup`)
    mup: dict[str, Any] | None = None  # init mup: base_width, init_std, output_mult

    def check(self) -> None:
        if self.trainable not in ("all", "head"):
            raise ConfigError(f"trainable must be 'all' or 'head', not {self.trainable!r}")
        if self.optimizer is not None and self.optimizer.get("name") not in OPTIMIZERS:
            raise ConfigError(f"optimizer.name must be one of {OPTIMIZERS}, not {self.optimizer.get('name')!r}")
        if self.init not in (*INITS, "mup"):
            raise ConfigError(f"init must be one of {(*INITS, 'mup')}, not {self.init!r}")
        if (self.init == "mup") != (self.mup is not None):
            raise ConfigError("init mup and mup settings go together: set both or neither")
        if self.init == "mup":
            from ..models.mup_widths import check

            check(self.size, self.mup)
            if (self.optimizer or {}).get("name") == "muon":
                raise ConfigError(
                    "init mup trains with adamw or sgd (mup.MuAdamW, mup.MuSGD); muon has no muP rule here"
                )


def _model(spec: RunSpec, backbone: str | None) -> torch.nn.Module:
    """The model of a run: fresh, or for a probe a backbone (saved or fresh) with a fresh head."""
    attn = "sdpa"
    if backbone is not None:
        model = llama.load(backbone, attn)
    elif spec.init == "mup":
        model = llama.build(spec.size, spec.vocab_size, spec.context_length, spec.seed, attn, mup=spec.mup)
    else:
        model = reinit(
            llama.build(spec.size, spec.vocab_size, spec.context_length, spec.seed, attn), spec.init, spec.seed
        )
    if spec.trainable == "head":
        fresh_head(model, spec.seed)
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("lm_head."))
    return model


def fresh_head(model: torch.nn.Module, seed: int) -> None:
    """Give ``model`` an LM head of its own, untied, drawn from N(0, initializer_range^2) with ``seed``
    (a probe's head: the same for a pretrained and a random backbone of one seed).

    Not ``model._init_weights``: transformers 5's init functions skip weights loaded by
    ``from_pretrained`` (their ``_is_hf_initialized`` flag), so a loaded backbone kept its trained head.
    """
    model.config.tie_word_embeddings = False
    weight = torch.empty_like(model.lm_head.weight)
    torch.nn.init.normal_(weight, 0.0, model.config.initializer_range, generator=torch.Generator().manual_seed(seed))
    model.lm_head.weight = torch.nn.Parameter(weight)


def _check_data(spec: RunSpec, data_dir: Path) -> tuple[TrainOrder, FixedSet, FixedSet]:
    vocab = read_meta(data_dir / "train.bin").get("vocab_size")
    if vocab is None or vocab > spec.vocab_size:  # vocab_size is the model's, at most the tokenizer's
        raise DataError(
            f"{data_dir / 'train.bin'}: a vocabulary of {vocab} tokens, more than the config's vocab_size "
            f"{spec.vocab_size} (the model's vocabulary); raise vocab_size to {vocab} or prepare the data again"
        )
    order = TrainOrder(Contexts(data_dir / "train.bin", spec.context_length), spec.batch_size, spec.data_seed)
    if spec.steps > order.steps:
        raise ConfigError(
            f"steps={spec.steps}: one pass over {data_dir / 'train.bin'} at batch_size="
            f"{spec.batch_size} and context_length={spec.context_length} has only {order.steps} steps"
        )
    measure_set = FixedSet(
        Contexts(data_dir / "validation.bin", spec.context_length), spec.lnp["measure_contexts"], "lnp.measure_contexts"
    )
    if spec.lnp["measure_batch"] > spec.lnp["measure_contexts"]:
        raise ConfigError(
            f"lnp.measure_batch={spec.lnp['measure_batch']} exceeds lnp.measure_contexts={spec.lnp['measure_contexts']}"
        )
    test_set = FixedSet(
        Contexts(data_dir / "test.bin", spec.context_length), spec.eval["test_contexts"], "eval.test_contexts"
    )
    return order, measure_set, test_set


def inputs(data_dir: str | os.PathLike, backbone: str | None) -> dict[str, Path]:
    """Every file a run reads: the three token splits, and a probe's saved backbone."""
    files = {f"{split}.bin": Path(data_dir) / f"{split}.bin" for split in ("train", "validation", "test")}
    if backbone is not None:
        files |= {f"backbone/{f.name}": f for f in sorted(Path(backbone).iterdir()) if f.is_file()}
    return files


def task(spec: RunSpec, data_dir: str | os.PathLike, device: torch.device, backbone: str | None = None) -> Task:
    """The run's model, optimizer, data and loss, checked against ``data_dir``."""
    order, measure_set, test_set = _check_data(spec, Path(data_dir))
    model = _model(spec, backbone).to(device)
    return Task(
        model=model,
        optimizer=optimizers.build(model, spec, device),
        order=order,
        measure_set=measure_set,
        test_set=test_set,
        loss=lm_loss,
        units=spec.batch_size * spec.context_length,
        unit_name="tokens",
        hutchinson=spec.lnp["hutchinson"],
        load_state=lambda path: llama.load(path).state_dict(),
        inputs=inputs(data_dir, backbone),
    )


def train(
    spec: RunSpec,
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    state_dir: str | os.PathLike,
    backbone: str | None = None,
    *,
    checksum_max_mb: float = math.inf,
) -> dict[str, Any]:
    """Run (or resume) one language-model or probe run; writes what :func:`.loop.run` writes."""
    device = pick_device(spec.device)
    return run(task(spec, data_dir, device, backbone), spec, device, out_dir, state_dir, checksum_max_mb)

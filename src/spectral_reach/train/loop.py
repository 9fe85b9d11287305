"""One training loop for language models, linear probes and ViTs, with LNP measured in the loop.

Per step ``s`` (nanoGPT-style, one pass over the data in a fixed order):

    loss = CE(model(x_s), y_s);  loss.backward()
    if s is in a measurement window:  measure(model, CE, B=(x_s, y_s), B'=draw(measure set, s),
                                              train_grad=the gradient just computed)
    AdamW step; scheduler step; log; at log-spaced steps evaluate the test loss;
    every ``checkpoint_every`` steps (and on SIGTERM) write a resume checkpoint.

Everything random is fixed by ``seed`` (initialisation, Hutchinson vectors) and ``data_seed``
(data order, ``B'`` draws), so a resumed run ends bitwise equal to an uninterrupted one on CPU.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd
import torch
import torch.nn.functional as F
import transformers
from torch import Tensor

from ..data import Contexts, DataError, FixedSet, TrainOrder, read_meta
from ..data.memmap import atomic_file
from ..lnp import LogitsOnly, measure
from ..models import llama
from . import checkpoint
from .schedule import eval_steps, lnp_steps, lr_factor

log = logging.getLogger(__name__)


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


class Preempted(RuntimeError):
    """SIGTERM arrived; a checkpoint was written and the run can be resumed."""


LNP_PRECISIONS = ("fp32", "tf32", "bf16")


@dataclass(frozen=True)
class RunSpec:
    """Everything that shapes one run; built from the rule's params (:meth:`from_dict`)."""

    size: dict[str, Any]
    vocab_size: int
    context_length: int
    batch_size: int
    steps: int
    lr: float
    seed: int
    data_seed: int
    betas: tuple[float, float]
    eps: float
    weight_decay: float
    warmup: int
    schedule: str
    lnp: dict[str, Any]
    eval: dict[str, int]
    checkpoint_every: int
    log_every: int
    device: str = "auto"
    precision: str = "fp32"
    compile: bool = False
    trainable: str = "all"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunSpec":
        spec = build_spec(cls, d, "run")
        if spec.trainable not in ("all", "head"):
            raise ValueError(f"trainable must be 'all' or 'head', not {spec.trainable!r}")
        return spec


def build_spec(cls: type, d: dict[str, Any], kind: str) -> Any:
    """A run spec dataclass ``cls`` from the rule's params ``d``: unknown keys are refused, naming
    the known ones; the settings every run kind shares (learning rate, window width, precision,
    warmup) are checked. ``kind`` names the run in messages."""
    names = {f.name for f in fields(cls)}
    if unknown := set(d) - names:
        raise ValueError(f"unknown {kind} settings {sorted(unknown)}; known: {sorted(names)}")
    spec = cls(**{**d, "betas": tuple(d["betas"])})
    if spec.lr <= 0:
        raise ValueError(f"lr must be positive, not {spec.lr}")
    if spec.lnp["width"] > spec.steps:
        raise ValueError(f"lnp.width={spec.lnp['width']} exceeds steps={spec.steps}")
    if spec.lnp.get("precision", "fp32") not in LNP_PRECISIONS:
        raise ValueError(f"lnp.precision must be one of {LNP_PRECISIONS}, not {spec.lnp['precision']!r}")
    if spec.warmup >= spec.steps:
        raise ValueError(f"warmup={spec.warmup} must be below steps={spec.steps}")
    return spec


def lm_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean next-token cross-entropy over all predicted tokens, computed in fp32."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))


@contextmanager
def lnp_precision(precision: str, device: torch.device) -> Iterator[None]:
    """Arithmetic of an LNP measurement on ``device``; every sum still accumulates in fp32.

    ``fp32``: full fp32. ``tf32``: fp32 tensors, matmuls on TF32 tensor cores (10-bit
    mantissa inputs, fp32 accumulation). ``bf16``: the forward and backward passes under bf16
    autocast (the Linear rule forms its per-sample blocks in bf16 as well) and the remaining fp32
    matmuls on TF32. On a CPU only ``bf16`` changes anything. The training step's own precision
    is the run's ``precision``.
    """
    if precision not in LNP_PRECISIONS:
        raise ValueError(f"lnp.precision must be one of {LNP_PRECISIONS}, not {precision!r}")
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision != "fp32"
    try:
        with torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext():
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _model(spec: RunSpec, backbone: str | None) -> torch.nn.Module:
    """The model of a run: fresh, or for a probe a backbone (saved or fresh) with a fresh head."""
    attn = "sdpa"
    if backbone is not None:
        model = llama.load(backbone, attn)
    else:
        model = llama.build(spec.size, spec.vocab_size, spec.context_length, spec.seed, attn)
    if spec.trainable == "head":
        if model.config.tie_word_embeddings:
            raise ValueError("a linear probe needs an untied lm_head (size setting tied: false)")
        torch.manual_seed(spec.seed)
        model._init_weights(model.lm_head)
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("lm_head."))
    return model


def _evaluate(model: torch.nn.Module, loss: Callable[[Tensor, Tensor], Tensor], test: FixedSet, batch: int,
              device: torch.device, autocast) -> float:
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad(), autocast():
        for x, y in test.chunks(batch):
            total += loss(model(x.to(device)).logits, y.to(device)).item() * len(x)
            count += len(x)
    model.train()
    return total / count


def _check_data(spec: RunSpec, data_dir: Path) -> tuple[TrainOrder, FixedSet, FixedSet]:
    vocab = read_meta(data_dir / "train.bin").get("vocab_size")
    if vocab != spec.vocab_size:
        raise DataError(f"{data_dir / 'train.bin'}: vocabulary {vocab}, but the config's vocab_size is {spec.vocab_size}")
    order = TrainOrder(Contexts(data_dir / "train.bin", spec.context_length), spec.batch_size, spec.data_seed)
    if spec.steps > order.steps:
        raise ValueError(f"steps={spec.steps}: one pass over {data_dir / 'train.bin'} at batch_size="
                         f"{spec.batch_size} and context_length={spec.context_length} has only {order.steps} steps")
    measure_set = FixedSet(Contexts(data_dir / "validation.bin", spec.context_length), spec.lnp["measure_contexts"],
                           "lnp.measure_contexts")
    if spec.lnp["measure_batch"] > spec.lnp["measure_contexts"]:
        raise ValueError(f"lnp.measure_batch={spec.lnp['measure_batch']} exceeds lnp.measure_contexts="
                         f"{spec.lnp['measure_contexts']}")
    test_set = FixedSet(Contexts(data_dir / "test.bin", spec.context_length), spec.eval["test_contexts"],
                        "eval.test_contexts")
    return order, measure_set, test_set


@dataclass
class Task:
    """What the loop needs to know of one run beyond the shared settings of :class:`RunSpec`.

    ``model(x).logits`` are the outputs; ``loss`` is a mean over loss units; ``units`` counts what
    one step consumes (tokens or images); ``hutchinson`` is K, or ``None`` for the exact sum over
    the outputs; ``load_state(path)`` reads the state dict of a ``save_pretrained`` folder.
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    order: TrainOrder
    measure_set: FixedSet
    test_set: FixedSet
    loss: Callable[[Tensor, Tensor], Tensor]
    units: int
    unit_name: str
    hutchinson: int | None
    load_state: Callable[[Path], dict[str, Tensor]]


def adamw(params: list[torch.nn.Parameter], spec: Any, device: torch.device) -> torch.optim.Optimizer:
    """AdamW with the run's learning rate, betas, eps and weight decay (fused on a GPU)."""
    return torch.optim.AdamW(params, lr=spec.lr, betas=spec.betas, eps=spec.eps, weight_decay=spec.weight_decay,
                             fused=device.type == "cuda")


def train(spec: RunSpec, data_dir: str | os.PathLike, out_dir: str | os.PathLike, state_dir: str | os.PathLike,
          backbone: str | None = None) -> dict[str, Any]:
    """Run (or resume) one language-model or probe run; see :func:`run`."""
    device = pick_device(spec.device)
    order, measure_set, test_set = _check_data(spec, Path(data_dir))
    model = _model(spec, backbone).to(device)
    task = Task(model, adamw([p for p in model.parameters() if p.requires_grad], spec, device), order, measure_set,
                test_set, lm_loss, spec.batch_size * spec.context_length, "tokens", spec.lnp["hutchinson"],
                lambda path: llama.load(path).state_dict())
    return run(task, spec, device, out_dir, state_dir)


def run(task: Task, spec: Any, device: torch.device, out_dir: str | os.PathLike,
        state_dir: str | os.PathLike) -> dict[str, Any]:
    """Run (or resume) ``task`` with the shared settings of ``spec``; write ``model/``, ``metrics``,
    ``lnp``, ``eval`` tables and ``done.json`` to ``out_dir``. Resume checkpoints live in
    ``state_dir`` and are removed at the end."""
    out_dir, state_dir = Path(out_dir), Path(state_dir)
    transformers.utils.logging.disable_progress_bar()
    torch.use_deterministic_algorithms(device.type == "cpu", warn_only=True)
    model, opt, order, measure_set, test_set = task.model, task.optimizer, task.order, task.measure_set, task.test_set
    params = [p for p in model.parameters() if p.requires_grad]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, spec.warmup, spec.steps, spec.schedule))
    bf16 = spec.precision == "bf16"
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else nullcontext
    step_model = torch.compile(model) if spec.compile else model
    measured, evaluated = lnp_steps(spec.steps, spec.lnp["per_decade"], spec.lnp["width"]), set(
        eval_steps(spec.steps, spec.eval["per_decade"]))
    rows: dict[str, list[dict[str, Any]]] = {"metrics": [], "lnp": [], "eval": []}
    start, resumed = 0, []
    if (ckpt := checkpoint.latest(state_dir)) is not None:
        state = checkpoint.load_state(ckpt)
        model.load_state_dict(task.load_state(ckpt / "model"))
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.random.set_rng_state(state["rng"])
        start, rows, resumed = state["step"], state["rows"], state["resumed"] + [state["step"]]
        log.info("resuming from checkpoint %s at step %d of %d", ckpt, start, spec.steps)

    def save_checkpoint(next_step: int) -> Path:
        return checkpoint.save(state_dir, next_step, model, {
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": torch.random.get_rng_state(),
            "step": next_step, "rows": rows, "resumed": resumed})

    preempt = {"now": False}

    def on_sigterm(signum, frame):
        preempt["now"] = True
        log.warning("SIGTERM: writing a checkpoint after this step, then stopping")

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    n_params = sum(p.numel() for p in model.parameters())
    per_step, unit = task.units, task.unit_name
    log.info("run: %s params (%s trainable) on %s, %d steps of %d %s, %d LNP steps",
             f"{n_params:,}", f"{sum(p.numel() for p in params):,}", device, spec.steps, per_step, unit, len(measured))
    model.train()
    last_finite, t0 = math.nan, time.perf_counter()
    try:
        for step in range(start, spec.steps):
            t_step = time.perf_counter()
            x, y = (t.to(device) for t in order.batch(step))
            with autocast():
                logits = step_model(x).logits
            loss = task.loss(logits, y)
            if not torch.isfinite(loss):
                raise NonFiniteLoss(f"step {step}: training loss {loss.item()}; last finite loss {last_finite:.6g} at "
                                    f"step {step - 1}. Lower the learning rate; the last good checkpoint in "
                                    f"{state_dir} is kept")
            loss.backward()
            lnp_s = 0.0
            if step in measured:
                t_lnp = time.perf_counter()
                gen = torch.Generator(device=device).manual_seed(spec.seed * 1_000_003 + step)
                with lnp_precision(spec.lnp.get("precision", "fp32"), device):
                    rec = measure(LogitsOnly(model), task.loss, (x, y), tuple(
                        t.to(device) for t in measure_set.draw(spec.lnp["measure_batch"], spec.data_seed, step)),
                                  hutchinson=task.hutchinson, train_grad=[p.grad for p in params], generator=gen)
                lnp_s = time.perf_counter() - t_lnp
                rows["lnp"].append({"step": step, "window": measured[step], unit: (step + 1) * per_step,
                                    **rec.as_row()})
            opt.step()
            lr = sched.get_last_lr()[0]
            sched.step()
            opt.zero_grad(set_to_none=True)
            last_finite = loss.item()
            rows["metrics"].append({"step": step, unit: (step + 1) * per_step, "loss": last_finite, "lr": lr,
                                    "step_s": time.perf_counter() - t_step, "lnp_s": lnp_s})
            if step in evaluated:
                rows["eval"].append({"step": step, unit: (step + 1) * per_step,
                                     "test_loss": _evaluate(step_model, task.loss, test_set, spec.eval["batch"], device,
                                                               autocast)})
            if (step + 1) % spec.log_every == 0 or step + 1 == spec.steps:
                done = step + 1 - start
                rate = done * per_step / (time.perf_counter() - t0)
                log.info("step %d/%d loss %.4f lr %.3g %.0f %s/s eta %.0f s", step + 1, spec.steps, last_finite, lr,
                         rate, unit, (spec.steps - step - 1) * per_step / rate)
            if preempt["now"]:
                save_checkpoint(step + 1)
                raise Preempted(f"stopped by SIGTERM after step {step}; rerun to resume from {state_dir}")
            if (step + 1) % spec.checkpoint_every == 0 and step + 1 < spec.steps:
                save_checkpoint(step + 1)
        if start < spec.steps:
            save_checkpoint(spec.steps)
    finally:
        signal.signal(signal.SIGTERM, previous)
    summary = _write_outputs(spec, model, rows, out_dir, n_params, resumed, {unit: spec.steps * per_step})
    shutil.rmtree(state_dir, ignore_errors=True)
    return summary


def _write_outputs(spec: Any, model: torch.nn.Module, rows: dict[str, list], out_dir: Path, n_params: int,
                   resumed: list[int], seen: dict[str, int]) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / ".model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    shutil.rmtree(out_dir / "model", ignore_errors=True)
    tmp.rename(out_dir / "model")
    for name, table in rows.items():
        with atomic_file(out_dir / f"{name}.parquet") as tmp:
            pd.DataFrame(table).to_parquet(tmp, index=False)
    metrics = pd.DataFrame(rows["metrics"])
    summary = {"params": n_params, "steps": spec.steps, **seen,
               "final_test_loss": rows["eval"][-1]["test_loss"], "train_s": float(metrics["step_s"].sum()),
               "lnp_s": float(metrics["lnp_s"].sum()), "resumed_at": resumed}
    (out_dir / "done.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary

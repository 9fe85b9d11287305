"""The training loop that language models, linear probes and ViTs share, with LNP measured in it.

Per step ``s`` (nanoGPT-style, one pass over the data in a fixed order):

    loss = CE(model(x_s), y_s);  loss.backward();  AdamW step
    if s is in a measurement window:  measure(model, CE, B=(x_s, y_s), B'=draw(measure set, s),
                                              train_grad=the gradient just computed,
                                              update=(theta_before - theta_after) / lr)
                                      at theta_before, then theta_after is put back
    scheduler step; log; at log-spaced steps evaluate the test loss;
    every ``checkpoint_every`` steps (and on SIGTERM) write a resume checkpoint.

As it trains, the run writes TensorBoard event files into ``<out_dir>/tensorboard``
(:mod:`.tracking`) and a log line every ``log_every`` steps with the latest test loss and chi_pos.

The loss stays on the device: it is read (one host sync) every ``log_every`` steps, before a
measurement and before a checkpoint, so a NaN stops the run naming its step and never reaches a
checkpoint; step times are taken at those reads. On a GPU, batches come from pinned memory,
copied asynchronously, the next one read from disk while the GPU works.

Everything random is fixed by ``seed`` (initialisation, Hutchinson vectors) and ``data_seed``
(data order, ``B'`` draws), so a resumed run ends bitwise equal to an uninterrupted one on CPU.
Around the loop: the settings (:mod:`.spec`), the resume decision (:mod:`.resume`: only a
checkpoint of this very run), the non-finite guards and their advice (:mod:`.guards`), the step
timer (:mod:`.timing`). What differs between run kinds (model, data, loss) is a :class:`Task`,
built by :mod:`.lm` and :mod:`.vit`.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import transformers
from torch import Tensor

from ..data import FixedSet, TrainOrder
from ..data.memmap import verify_all
from ..lnp import LogitsOnly, measure
from . import checkpoint, fingerprint, guards
from .device import lnp_precision
from .guards import NonFiniteLoss
from .outputs import write_outputs
from .resume import resumable
from .schedule import eval_steps, lnp_steps, lr_factor
from .timing import StepTimer
from .tracking import Tracker

log = logging.getLogger(__name__)


class Preempted(RuntimeError):
    """SIGTERM arrived; a checkpoint was written and the run can be resumed."""


def _evaluate(
    model: torch.nn.Module,
    loss: Callable[[Tensor, Tensor], Tensor],
    test: FixedSet,
    batch: int,
    device: torch.device,
    autocast,
) -> float:
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad(), autocast():
        for x, y in test.chunks(batch):
            total += loss(model(x.to(device)).logits, y.to(device)).item() * len(x)
            count += len(x)
    model.train()
    return total / count


@dataclass
class Task:
    """What the loop needs to know of one run beyond the shared settings of :class:`RunSpec`.

    ``model(x).logits`` are the outputs; ``loss`` is a mean over loss units; ``units`` counts what
    one step consumes (tokens or images); ``hutchinson`` is K, or ``None`` for the exact sum over
    the outputs; ``load_state(path)`` reads the state dict of a ``save_pretrained`` folder;
    ``inputs`` names every file the run reads (``{role: path}``; data files are verified against
    their sidecars at start) for its fingerprint.
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
    inputs: dict[str, Path]


@dataclass
class _Loop:
    """The state of one run as the loop advances: model, optimizer, schedule and the table rows."""

    task: Task
    spec: Any
    device: torch.device
    state_dir: Path
    identity: dict[str, Any]
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"metrics": [], "lnp": [], "eval": []})
    start: int = 0
    resumed: list[int] = field(default_factory=list)
    preempted: bool = False
    pending: list[tuple[dict[str, Any], Tensor]] = field(default_factory=list)  # metrics rows, loss on device
    last_finite: float = math.nan
    prefetched: tuple[int, tuple[Tensor, Tensor]] | None = None
    timer: StepTimer = field(default_factory=StepTimer)
    tracker: Tracker | None = None  # TensorBoard event files, from the step the run starts at
    latest: dict[str, float] = field(default_factory=dict)  # the last test loss and chi_pos, for the log

    def __post_init__(self) -> None:
        spec = self.spec
        self.params = [p for p in self.task.model.parameters() if p.requires_grad]
        # the multiplier of the peak rate at each step: the scheduler's, and the measurement's nominal lr
        self.lr_factor = lambda s: lr_factor(s, spec.warmup, spec.steps, spec.schedule, spec.decay_fraction)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.task.optimizer, self.lr_factor)
        bf16 = spec.precision == "bf16"
        self.autocast = (lambda: torch.autocast(self.device.type, dtype=torch.bfloat16)) if bf16 else nullcontext
        # compiled wherever torch can compile (inductor: CUDA, or C++ on a CPU); the measurement's hooks
        # and function mode always see the eager module, self.task.model
        self.step_model = torch.compile(self.task.model) if spec.compile else self.task.model
        # {step: index of the LNP window it belongs to}
        self.window_of = lnp_steps(spec.steps, spec.lnp["per_decade"], spec.lnp["width"])
        self.evaluated = set(eval_steps(spec.steps, spec.eval["per_decade"]))
        # per-layer LNP (lnp.groups): a long-form table of its own, so lnp.parquet keeps one row per step
        self.groups = "default" if spec.lnp.get("groups", False) else None
        if self.groups:
            self.rows.setdefault("lnp_groups", [])

    @property
    def fingerprint(self) -> str:
        return fingerprint.fingerprint(self.identity)

    def resume(self) -> None:
        """Continue from the newest checkpoint in ``state_dir`` if it is of this very run (:mod:`.resume`)."""
        if (found := resumable(self.state_dir, self.identity, self.task.load_state)) is None:
            return
        ckpt, state, weights = found
        self.task.model.load_state_dict(weights)
        self.task.optimizer.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        torch.random.set_rng_state(state["rng"])
        self.start, self.rows, self.resumed = state["step"], state["rows"], state["resumed"] + [state["step"]]
        log.info("resuming from checkpoint %s at step %d of %d", ckpt, self.start, self.spec.steps)

    def checkpoint(self, next_step: int) -> Path:
        """Write the state a run continues from at ``next_step``: only after the losses so far
        are read and found finite, and only of finite parameters and optimizer state."""
        self.flush()
        if self.tracker:
            self.tracker.flush()  # the curves reach as far as the checkpoint
        guards.check_state(self.task.model, self.task.optimizer, next_step, self.last_finite)
        state = {
            "fingerprint": self.fingerprint,
            "identity": self.identity,
            "optimizer": self.task.optimizer.state_dict(),
            "scheduler": self.sched.state_dict(),
            "rng": torch.random.get_rng_state(),
            "step": next_step,
            "rows": self.rows,
            "resumed": self.resumed,
        }
        saved = checkpoint.save(self.state_dir, next_step, self.task.model, state)
        self.timer.restart()  # the write belongs to no step
        return saved

    def seen(self, step: int) -> int:
        """Tokens or images consumed by the end of ``step``."""
        return (step + 1) * self.task.units

    def batch(self, step: int) -> tuple[Tensor, Tensor]:
        """Step ``step``'s batch on the device; on a GPU from pinned memory, copied asynchronously,
        and prepared during the previous step (:meth:`prefetch`)."""
        if self.prefetched is not None and self.prefetched[0] == step:
            cpu = self.prefetched[1]
        else:
            cpu = self.task.order.batch(step)
        self.prefetched = None
        if self.device.type != "cuda":
            return tuple(t.to(self.device) for t in cpu)
        return tuple(t.pin_memory().to(self.device, non_blocking=True) for t in cpu)

    def prefetch(self, step: int) -> None:
        """Read step ``step``'s batch from disk while the GPU works on the current one."""
        if self.device.type == "cuda" and step < self.spec.steps:
            self.prefetched = (step, self.task.order.batch(step))

    def step(self, step: int) -> float:
        """One training step (LNP measured in it if ``step`` is in a window); its learning rate.

        The loss stays on the device (no host sync): :meth:`flush` reads it, at log steps,
        before a measurement and before a checkpoint."""
        x, y = self.batch(step)
        with self.autocast():
            logits = self.step_model(x).logits
        loss = self.task.loss(logits, y)
        loss.backward()
        self.prefetch(step + 1)
        measured = step in self.window_of
        if measured:
            self.flush()  # a non-finite loss stops the run here, before the step and the measurement
        before = [p.detach().clone() for p in self.params] if measured else None
        self.task.optimizer.step()
        lnp_s = self.measure(step, x, y, before) if measured else 0.0
        lr = self.sched.get_last_lr()[0]
        self.sched.step()
        self.task.optimizer.zero_grad(set_to_none=True)
        unit = self.task.unit_name
        row = {"step": step, unit: self.seen(step), "loss": None, "lr": lr, "step_s": None, "lnp_s": lnp_s}
        self.rows["metrics"].append(row)
        self.pending.append((row, loss.detach()))
        if step in self.evaluated:
            t_eval = time.perf_counter()
            test_loss = _evaluate(
                self.step_model, self.task.loss, self.task.test_set, self.spec.eval["batch"], self.device, self.autocast
            )  # reads each chunk's loss: synchronised
            self.rows["eval"].append({"step": step, unit: self.seen(step), "test_loss": test_loss})
            self.latest["test loss"] = test_loss
            if self.tracker:
                self.tracker.scalars(step, {"test/loss": test_loss})
            self.timer.exclude(time.perf_counter() - t_eval)
        return lr

    def flush(self) -> float:
        """Read the losses still on the device into the metrics rows (one host sync); the last one.
        A non-finite loss stops the run, naming its step: no checkpoint is written after it."""
        if self.pending:
            values = torch.stack([loss for _, loss in self.pending]).tolist()  # waits for the device
            rows = [row for row, _ in self.pending]
            self.timer.close(rows)
            self.last_finite = guards.finite_losses(rows, values, self.last_finite)
            self.pending.clear()
            if self.tracker:
                for row, value in zip(rows, values):
                    self.tracker.scalars(row["step"], {"train/loss": value, "train/lr": row["lr"]})
        return self.last_finite

    def measure(self, step: int, x: Tensor, y: Tensor, before: list[Tensor]) -> float:
        """LNP of this step at the parameters ``before`` the optimizer's step, with the gradient just
        computed and the update the optimizer applied (its first-order loss change: ``delta_update``);
        the parameters after the step are put back. Its seconds."""
        t_lnp, spec = time.perf_counter(), self.spec
        gen = torch.Generator(device=self.device).manual_seed(spec.seed * 1_000_003 + step)
        other = self.task.measure_set.draw(spec.lnp["measure_batch"], spec.data_seed, step)
        # the step's nominal learning rate (per-group multipliers, as muP's, stay in the update)
        lr = spec.lr * self.lr_factor(step)
        with torch.no_grad():
            after = [p.detach().clone() for p in self.params]
            for p, b in zip(self.params, before):
                p.copy_(b)
            update = [b.sub_(a).div_(lr) for b, a in zip(before, after)] if lr else None  # in place: no copy
        with lnp_precision(spec.lnp.get("precision", "fp32"), self.device):
            rec = measure(
                LogitsOnly(self.task.model),
                self.task.loss,
                (x, y),
                tuple(t.to(self.device) for t in other),
                hutchinson=self.task.hutchinson,
                train_grad=[p.grad for p in self.params],
                generator=gen,
                groups=self.groups,
                update=update,
            )
        with torch.no_grad():
            for p, a in zip(self.params, after):
                p.copy_(a)
        where = {"step": step, "window": self.window_of[step], self.task.unit_name: self.seen(step)}
        self.rows["lnp"].append({**where, **rec.as_row()})
        if self.groups:
            self.rows["lnp_groups"] += [{**where, **row} for row in rec.group_rows()]
        self.latest["chi_pos"] = rec.chi_pos
        if self.tracker:
            self.tracker.lnp(step, rec.as_row(), rec.group_rows())
        return time.perf_counter() - t_lnp  # measure() read its results from the device: synchronised

    def progress(self, step: int, lr: float, t0: float) -> None:
        """Every ``log_every`` steps and at the end: read the losses, log the rate and the ETA."""
        if (step + 1) % self.spec.log_every and step + 1 != self.spec.steps:
            return
        loss = self.flush()
        per_step, unit = self.task.units, self.task.unit_name
        rate = (step + 1 - self.start) * per_step / (time.perf_counter() - t0)
        eta = (self.spec.steps - step - 1) * per_step / rate
        latest = "".join(f" {k} {self.latest[k]:.4g}" for k in ("test loss", "chi_pos") if k in self.latest)
        log.info(
            "step %d/%d loss %.4f lr %.3g%s %.0f %s/s eta %.0f s",
            step + 1, self.spec.steps, loss, lr, latest, rate, unit, eta,
        )  # fmt: skip
        if self.tracker:
            self.tracker.scalars(step, {f"train/{unit}_per_s": rate})
            self.tracker.flush()

    def on_sigterm(self, signum: int, frame: Any) -> None:
        self.preempted = True
        log.warning("SIGTERM: writing a checkpoint after this step, then stopping")


def verify_inputs(task: Task, checksum_max_mb: float) -> None:
    """Check every data file the run reads against its sidecar (:func:`..data.memmap.verify_all`)
    before the first step, and log what was checked."""
    for role, checked in verify_all(task.inputs, checksum_max_mb * 2**20).items():
        log.info("data %s: %s, %d bytes, %s", role, checked["path"], checked["bytes"], checked["checked"])


def run(
    task: Task,
    spec: Any,
    device: torch.device,
    out_dir: str | os.PathLike,
    state_dir: str | os.PathLike,
    checksum_max_mb: float = math.inf,
) -> dict[str, Any]:
    """Run (or resume) ``task`` with the shared settings of ``spec``; write ``model/``, ``metrics``,
    ``lnp``, ``eval`` tables and ``done.json`` to ``out_dir``, each recording the run's identity
    and fingerprint. Resume checkpoints live in ``state_dir`` and are removed at the end. Data
    files up to ``checksum_max_mb`` MiB (all by default) are checked against their sidecars' sha256 first."""
    out_dir, state_dir = Path(out_dir), Path(state_dir)
    transformers.utils.logging.disable_progress_bar()
    torch.use_deterministic_algorithms(device.type == "cpu", warn_only=True)
    verify_inputs(task, checksum_max_mb)
    loop = _Loop(task, spec, device, state_dir, fingerprint.identity(spec, task.inputs))
    log.info("run fingerprint %s", loop.fingerprint)
    loop.resume()
    n_params = sum(p.numel() for p in task.model.parameters())
    log.info(
        "run: %s params (%s trainable) on %s, %d steps of %d %s, %d LNP steps",
        f"{n_params:,}",
        f"{sum(p.numel() for p in loop.params):,}",
        device,
        spec.steps,
        task.units,
        task.unit_name,
        len(loop.window_of),
    )
    loop.tracker = Tracker(out_dir, loop.start, spec.tracking, config=loop.identity["spec"])
    previous = signal.signal(signal.SIGTERM, loop.on_sigterm)
    task.model.train()
    loop.timer.restart()
    t0 = loop.timer.mark
    try:
        for step in range(loop.start, spec.steps):
            lr = loop.step(step)
            loop.progress(step, lr, t0)
            if loop.preempted:
                loop.checkpoint(step + 1)
                raise Preempted(f"stopped by SIGTERM after step {step}; rerun to resume from {state_dir}")
            if (step + 1) % spec.checkpoint_every == 0 and step + 1 < spec.steps:
                loop.checkpoint(step + 1)
        if loop.start < spec.steps:
            loop.checkpoint(spec.steps)
    except NonFiniteLoss as e:
        raise NonFiniteLoss(f"{e}. {guards.next_run(state_dir)}") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        loop.tracker.close()
    seen = {task.unit_name: spec.steps * task.units}
    record = {"fingerprint": loop.fingerprint, **loop.identity}
    summary = write_outputs(spec, task.model, loop.rows, out_dir, n_params, loop.resumed, seen, record)
    shutil.rmtree(state_dir, ignore_errors=True)
    return summary

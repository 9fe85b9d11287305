"""The training loop that language models, linear probes and ViTs share, with LNP measured in it.

Per step ``s`` (nanoGPT-style, one pass over the data in a fixed order):

    loss = CE(model(x_s), y_s);  loss.backward()
    if s is in a measurement window:  measure(model, CE, B=(x_s, y_s), B'=draw(measure set, s),
                                              train_grad=the gradient just computed)
    AdamW step; scheduler step; log; at log-spaced steps evaluate the test loss;
    every ``checkpoint_every`` steps (and on SIGTERM) write a resume checkpoint.

The loss stays on the device: it is read (one host sync) every ``log_every`` steps, before a
measurement and before a checkpoint, so a NaN stops the run naming its step and never reaches a
checkpoint. Step times are taken at those reads, which wait for the device: each interval's wall
time, less its evaluations, measurements and checkpoint writes, is split evenly over its steps
(``step_s`` adds a step's own measurement, ``lnp_s``, which syncs and is timed on its own), so no
per-step sync is needed and on a GPU no queued work lands on whichever step syncs next. On a GPU, batches come from pinned memory, copied asynchronously, the next one read
from disk while the GPU works.

Everything random is fixed by ``seed`` (initialisation, Hutchinson vectors) and ``data_seed``
(data order, ``B'`` draws), so a resumed run ends bitwise equal to an uninterrupted one on CPU.
A run resumes only a checkpoint of itself: one whose fingerprint (:mod:`.fingerprint`: settings,
code version, input data) differs is set aside and the run starts fresh, its log naming what
changed. A checkpoint is written only of finite parameters and optimizer state.
What differs between run kinds (model, data, loss) is a :class:`Task`, built by :mod:`.lm` and
:mod:`.vit`.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import torch
import transformers
from torch import Tensor

from ..data import FixedSet, TrainOrder
from ..data.memmap import verify
from ..lnp import LogitsOnly, measure
from . import checkpoint, fingerprint
from .device import LNP_PRECISIONS, lnp_precision
from .outputs import write_outputs
from .schedule import eval_steps, lnp_steps, lr_factor

log = logging.getLogger(__name__)


class NonFiniteLoss(RuntimeError):
    """The training loss, the parameters or the optimizer state became NaN or infinite; nothing
    was checkpointed after it, and the message says what the next run will do."""


class Preempted(RuntimeError):
    """SIGTERM arrived; a checkpoint was written and the run can be resumed."""


@dataclass(frozen=True, kw_only=True)
class BaseSpec:
    """The settings every run kind has; :class:`.lm.RunSpec` and :class:`.vit.ViTSpec` add theirs."""

    size: dict[str, Any]
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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        """The spec from the rule's params ``d``: unknown keys are refused, naming the known ones;
        the settings every run kind shares are checked here, a kind's own in :meth:`check`."""
        names = {f.name for f in fields(cls)}
        if unknown := set(d) - names:
            raise ValueError(f"unknown {cls.kind} settings {sorted(unknown)}; known: {sorted(names)}")
        spec = cls(**{**d, "betas": tuple(d["betas"])})
        if spec.lr <= 0:
            raise ValueError(f"lr must be positive, not {spec.lr}")
        if spec.lnp["width"] > spec.steps:
            raise ValueError(f"lnp.width={spec.lnp['width']} exceeds steps={spec.steps}")
        if spec.lnp.get("precision", "fp32") not in LNP_PRECISIONS:
            raise ValueError(f"lnp.precision must be one of {LNP_PRECISIONS}, not {spec.lnp['precision']!r}")
        if spec.warmup >= spec.steps:
            raise ValueError(f"warmup={spec.warmup} must be below steps={spec.steps}")
        spec.check()
        return spec

    kind = "run"

    def check(self) -> None:
        """Checks of a run kind's own settings."""


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


def adamw(params: list[torch.nn.Parameter], spec: Any, device: torch.device) -> torch.optim.Optimizer:
    """AdamW with the run's settings (:func:`adamw_settings`)."""
    return torch.optim.AdamW(params, **adamw_settings(spec, device))


def adamw_settings(spec: Any, device: torch.device) -> dict[str, Any]:
    """The run's learning rate, betas, eps and weight decay, and ``fused`` (one kernel for all
    parameters) where torch has the fused kernel, on CPU and CUDA: on CPU it took a demo ViT's
    step from 2.2 ms of per-tensor updates to 0.3 ms."""
    return dict(
        lr=spec.lr,
        betas=spec.betas,
        eps=spec.eps,
        weight_decay=spec.weight_decay,
        fused=device.type in ("cpu", "cuda"),
    )


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
    mark: float = 0.0  # perf_counter at the last host sync that closed a timing interval
    excluded: float = 0.0  # seconds since the mark that belong to no step (evaluations)

    def __post_init__(self) -> None:
        spec = self.spec
        self.params = [p for p in self.task.model.parameters() if p.requires_grad]
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.task.optimizer, lambda s: lr_factor(s, spec.warmup, spec.steps, spec.schedule)
        )
        bf16 = spec.precision == "bf16"
        self.autocast = (lambda: torch.autocast(self.device.type, dtype=torch.bfloat16)) if bf16 else nullcontext
        # compiled wherever torch can compile (inductor: CUDA, or C++ on a CPU); the measurement's hooks
        # and function mode always see the eager module, self.task.model
        self.step_model = torch.compile(self.task.model) if spec.compile else self.task.model
        # {step: index of the LNP window it belongs to}
        self.window_of = lnp_steps(spec.steps, spec.lnp["per_decade"], spec.lnp["width"])
        self.evaluated = set(eval_steps(spec.steps, spec.eval["per_decade"]))

    @property
    def fingerprint(self) -> str:
        return fingerprint.fingerprint(self.identity)

    def resume(self) -> None:
        """Continue from the newest checkpoint in ``state_dir`` if it is of this very run (same
        fingerprint). Any other checkpoint (other settings or data, older code, no fingerprint,
        unreadable) is moved aside and the run starts fresh, saying why in one line."""
        if (ckpt := checkpoint.latest(self.state_dir)) is None:
            return
        try:
            state = checkpoint.load_state(ckpt)
            weights = self.task.load_state(ckpt / "model") if state.get("fingerprint") == self.fingerprint else None
        except Exception as e:  # any unreadable checkpoint: never crash on it, never resume it
            state, weights, why = {}, None, f"it cannot be read ({type(e).__name__}: {e})"
        else:
            if "fingerprint" not in state:
                why = "it records no fingerprint (written by an older version)"
            else:
                changed = fingerprint.differences(state.get("identity", {}), self.identity)
                why = "its run differs: " + "; ".join(changed)
        if weights is None:
            aside = checkpoint.set_aside(self.state_dir)
            log.warning("not resuming %s: %s. Starting fresh; the old checkpoints are in %s", ckpt, why, aside)
            return
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
        self.check_finite(next_step)
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
        self.mark = time.perf_counter()  # the write belongs to no step
        return saved

    def check_finite(self, next_step: int) -> None:
        """Raise :class:`NonFiniteLoss` if a parameter or optimizer state is NaN or infinite (one
        host sync; the names are looked up only then)."""
        named = [(n, p) for n, p in self.task.model.named_parameters() if p.requires_grad]
        named += [
            (f"optimizer state {k} of {n}", t)
            for (n, p) in named
            for k, t in self.task.optimizer.state.get(p, {}).items()
            if torch.is_tensor(t) and t.is_floating_point()
        ]
        if torch.stack([torch.isfinite(t).all() for _, t in named]).all():
            return
        bad = [n for n, t in named if not torch.isfinite(t).all()]
        raise NonFiniteLoss(
            f"after step {next_step - 1} (its loss finite, {self.last_finite:.6g}) {len(bad)} tensors are not finite "
            f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}): not checkpointed"
        )

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
        lnp_s = self.measure(step, x, y) if step in self.window_of else 0.0
        self.task.optimizer.step()
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
            self.excluded += time.perf_counter() - t_eval
        return lr

    def flush(self) -> float:
        """Read the losses still on the device into the metrics rows (one host sync); the last one.
        A non-finite loss stops the run, naming its step: no checkpoint is written after it."""
        if self.pending:
            values = torch.stack([loss for _, loss in self.pending]).tolist()  # waits for the device
            now = time.perf_counter()
            measured = sum(row["lnp_s"] for row, _ in self.pending)
            share = max(0.0, now - self.mark - self.excluded - measured) / len(self.pending)
            for row, _ in self.pending:
                row["step_s"] = share + row["lnp_s"]
            self.mark, self.excluded = now, 0.0
            for (row, _), value in zip(self.pending, values):
                if not math.isfinite(value):
                    raise NonFiniteLoss(
                        f"step {row['step']}: training loss {value}; last finite loss {self.last_finite:.6g} at "
                        f"step {row['step'] - 1}"
                    )
                row["loss"] = self.last_finite = value
            self.pending.clear()
        return self.last_finite

    def measure(self, step: int, x: Tensor, y: Tensor) -> float:
        """LNP of this step's update, with the gradient just computed; its seconds."""
        self.flush()  # a non-finite loss stops the run here, not inside the measurement
        t_lnp, spec = time.perf_counter(), self.spec
        gen = torch.Generator(device=self.device).manual_seed(spec.seed * 1_000_003 + step)
        other = self.task.measure_set.draw(spec.lnp["measure_batch"], spec.data_seed, step)
        with lnp_precision(spec.lnp.get("precision", "fp32"), self.device):
            rec = measure(
                LogitsOnly(self.task.model),
                self.task.loss,
                (x, y),
                tuple(t.to(self.device) for t in other),
                hutchinson=self.task.hutchinson,
                train_grad=[p.grad for p in self.params],
                generator=gen,
            )
        row = {"step": step, "window": self.window_of[step], self.task.unit_name: self.seen(step), **rec.as_row()}
        self.rows["lnp"].append(row)
        return time.perf_counter() - t_lnp  # measure() read its results from the device: synchronised

    def next_run(self) -> str:
        """What rerunning the job will do after a failure, and what to delete to do otherwise."""
        if (ckpt := checkpoint.latest(self.state_dir)) is None:
            return "Nothing was checkpointed: the next run starts fresh. Lower the learning rate (lr) in config/."
        step = checkpoint.step_of(ckpt)
        return (
            f"Lower the learning rate (lr) in config/: a run with changed settings starts fresh (the old checkpoint "
            f"is set aside). Rerun unchanged, it resumes the last good checkpoint, {ckpt} (step {step}), and meets "
            f"this again; to start unchanged settings from step 0, delete {self.state_dir}"
        )

    def progress(self, step: int, lr: float, t0: float) -> None:
        """Every ``log_every`` steps and at the end: read the losses, log the rate and the ETA."""
        if (step + 1) % self.spec.log_every and step + 1 != self.spec.steps:
            return
        loss = self.flush()
        per_step, unit = self.task.units, self.task.unit_name
        rate = (step + 1 - self.start) * per_step / (time.perf_counter() - t0)
        eta = (self.spec.steps - step - 1) * per_step / rate
        log.info(
            "step %d/%d loss %.4f lr %.3g %.0f %s/s eta %.0f s", step + 1, self.spec.steps, loss, lr, rate, unit, eta
        )

    def on_sigterm(self, signum: int, frame: Any) -> None:
        self.preempted = True
        log.warning("SIGTERM: writing a checkpoint after this step, then stopping")


def verify_inputs(task: Task, checksum_max_mb: float) -> None:
    """Check every data file the run reads against its sidecar (:func:`..data.memmap.verify`)
    before the first step, and log what was checked."""
    for role, path in task.inputs.items():
        if path.suffix == ".bin":
            checked = verify(path, checksum_max_mb * 2**20)
            log.info("data %s: %s, %d bytes, %s", role, path, checked["bytes"], checked["checked"])


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
    previous = signal.signal(signal.SIGTERM, loop.on_sigterm)
    task.model.train()
    t0 = loop.mark = time.perf_counter()
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
        raise NonFiniteLoss(f"{e}. {loop.next_run()}") from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    seen = {task.unit_name: spec.steps * task.units}
    record = {"fingerprint": loop.fingerprint, **loop.identity}
    summary = write_outputs(spec, task.model, loop.rows, out_dir, n_params, loop.resumed, seen, record)
    shutil.rmtree(state_dir, ignore_errors=True)
    return summary

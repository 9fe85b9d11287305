"""A run watched live: TensorBoard event files in the run's folder, written as it trains, and
optionally the same curves in Weights & Biases and MLflow.

Tags (x axis: the optimizer step): ``train/loss`` and ``train/lr`` per step, ``train/<unit>_per_s``
at each progress line, ``test/loss`` at each evaluation, ``lnp/<component>`` at each measured
step (``chi_loss``, ``chi_net``, ``chi_pos``, ``delta``, ``delta_update``) and
``lnp/<group>/chi_net``, ``lnp/<group>/chi_pos`` per parameter group where the run splits it.
``tensorboard --logdir runs/<run_name>`` shows a whole study, also while it runs on a cluster.

A run that resumes at step ``s`` purges the events at steps ``>= s`` that the killed attempt wrote
(TensorBoard's ``purge_step``), so each curve continues without duplicate steps; a run that starts
from step 0 starts a fresh folder.

W&B and MLflow (config key ``tracking``, off by default; ``pip install -e '.[tracking]'``) get the
same tags, sent in step order at each flush (every ``log_every`` steps and at checkpoints). A run
records its W&B and MLflow run ids and the last step it sent in ``<out_dir>/tracking.json``: a
resumed run continues the same W&B and MLflow runs from the step after that (neither can purge
points), and a run from step 0 starts new ones.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Mapping

from .fingerprint import flat

#: Folder of a run's event files, inside its output folder.
FOLDER = "tensorboard"
#: The W&B and MLflow run ids and the last step sent to them, inside the output folder.
STATE = "tracking.json"
#: The LNP components logged at each measured step.
COMPONENTS = ("chi_loss", "chi_net", "chi_pos", "delta", "delta_update")


class WandB:
    """A W&B run (``tracking.wandb``: ``project``, optional ``entity``, ``mode`` online or offline);
    its files go to ``<out_dir>/wandb``."""

    def __init__(self, settings: Mapping[str, Any], out_dir: Path, name: str, run_id: str | None, config: dict):
        import wandb

        self.run = wandb.init(
            project=settings["project"],
            entity=settings.get("entity"),
            group=settings.get("group"),
            name=name,
            id=run_id or uuid.uuid4().hex[:12],
            resume="allow",
            dir=str(out_dir),
            mode=settings.get("mode", "online"),
            config=config,
            settings=wandb.Settings(console="off", quiet=True),  # our log keeps its own lines
        )
        self.id = self.run.id

    def send(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


class MLflow:
    """An MLflow run (``tracking.mlflow``: ``tracking_uri``, optional ``experiment``) through
    MLflow's client, so no global state of the training process changes."""

    def __init__(self, settings: Mapping[str, Any], name: str, run_id: str | None, config: dict):
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(settings["tracking_uri"])
        if run_id is None:
            experiment = settings.get("experiment", "spectral-reach")
            found = self.client.get_experiment_by_name(experiment)
            eid = found.experiment_id if found else self.client.create_experiment(experiment)
            tags = {
                "spectral_reach.run": name,
                **({"spectral_reach.group": settings["group"]} if "group" in settings else {}),
            }
            run_id = self.client.create_run(eid, run_name=name, tags=tags).info.run_id
            for key, value in flat(config).items():
                self.client.log_param(run_id, key, str(value)[:500])
        self.id = run_id

    def send(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, step) for key, value in values.items()]
        for i in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics per batch
            self.client.log_batch(self.id, metrics=metrics[i : i + 1000])

    def close(self) -> None:
        self.client.set_terminated(self.id)


class Tracker:
    """TensorBoard's ``SummaryWriter`` on ``<out_dir>/tensorboard`` from step ``start`` on, and the
    W&B and MLflow runs that ``backends`` (the config's ``tracking``) names, each named by the run's
    folder and given its settings ``config``."""

    def __init__(
        self, out_dir: Path, start: int, backends: Mapping[str, Any] | None = None, config: dict | None = None
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter  # tensorboard is imported only by a training run

        out_dir = Path(out_dir)
        self.path = out_dir / FOLDER
        self.state_path = out_dir / STATE
        if start == 0:
            shutil.rmtree(self.path, ignore_errors=True)  # a fresh run: no curve of an earlier one
            self.state_path.unlink(missing_ok=True)
        self.writer = SummaryWriter(self.path, purge_step=start or None, flush_secs=10)
        state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        self.sent = state.get("sent", -1)  # the last step W&B and MLflow have
        self.pending: dict[int, dict[str, float]] = {}
        backends, name, config = backends or {}, out_dir.as_posix(), config or {}
        group = {"group": backends["group"]} if "group" in backends else {}
        self.others: dict[str, WandB | MLflow] = {}
        if backends.get("wandb"):
            self.others["wandb"] = WandB({**group, **backends["wandb"]}, out_dir, name, state.get("wandb"), config)
        if backends.get("mlflow"):
            self.others["mlflow"] = MLflow({**group, **backends["mlflow"]}, name, state.get("mlflow"), config)
        self._save()

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Log ``{tag: value}`` at ``step``; NaN values (not measured) are left out."""
        kept = {
            tag: float(value)
            for tag, value in values.items()
            if value is not None and not (isinstance(value, float) and math.isnan(value))
        }
        for tag, value in kept.items():
            self.writer.add_scalar(tag, value, step)
        if self.others and step > self.sent:
            self.pending.setdefault(step, {}).update(kept)

    def lnp(self, step: int, row: Mapping[str, float], groups: list[dict]) -> None:
        """One measured step's components, and each parameter group's ``chi_net`` and ``chi_pos``."""
        self.scalars(step, {f"lnp/{k}": row[k] for k in COMPONENTS if k in row})
        for g in groups:
            self.scalars(step, {f"lnp/{g['group']}/{k}": g[k] for k in ("chi_net", "chi_pos")})

    def flush(self) -> None:
        """Write the event files, and send W&B and MLflow what came since, in step order."""
        self.writer.flush()
        for step in sorted(self.pending):
            for backend in self.others.values():
                backend.send(step, self.pending[step])
            self.sent = step
        self.pending.clear()
        self._save()

    def _save(self) -> None:
        if self.others:
            state = {"sent": self.sent, **{k: b.id for k, b in self.others.items()}}
            self.state_path.write_text(json.dumps(state, sort_keys=True) + "\n")

    def close(self) -> None:
        self.flush()
        self.writer.close()
        for backend in self.others.values():
            backend.close()

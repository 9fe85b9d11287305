"""How often a training run logs, and where else it sends its curves (W&B, MLflow): settings that
change no number, so they stay out of every job's params (an edit would rerun the job). The workflow hands the jobs the cadences of its config through
the environment (:func:`cadence_env`, at parse time; SLURM jobs parse the workflow again and get it
too), and a job looks its own up by its output folder (:func:`log_every`). Imports nothing heavy:
the Snakefile imports it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

#: Environment variable carrying ``{"log_every": {output folder prefix: steps}, "tracking": {...}}`` to the jobs.
ENV = "SPECTRAL_REACH_TRACKING"
#: ``log_every`` of a run that no cadence names.
DEFAULT_LOG_EVERY = 100


def cadence_env(config: Mapping[str, Any]) -> str:
    """The value of :data:`ENV` for a workflow config: each language-model data set's ``log_every``
    for its language models, their intervention variants and probes, the ViTs' for theirs (schema
    default 100)."""
    cadence = {}
    for name, lm in (config.get("lm") or {}).items():
        for kind in ("lm", "probe", "variants"):
            cadence[f"results/{kind}/{name}/"] = lm.get("log_every", DEFAULT_LOG_EVERY)
    if config.get("vit"):
        cadence["results/vit/"] = config["vit"].get("log_every", DEFAULT_LOG_EVERY)
    backends = config.get("tracking") or {}
    if backends:  # every run of the study in one group, named after it
        backends = {**backends, "group": config.get("run_name", "spectral-reach")}
    return json.dumps({"log_every": cadence, "tracking": backends}, sort_keys=True)


def log_every(out_dir: str | os.PathLike, environ: Mapping[str, str] = os.environ) -> int:
    """The ``log_every`` of the run writing to ``out_dir``: the longest prefix of it that :data:`ENV`
    names, else :data:`DEFAULT_LOG_EVERY` (a run started by hand)."""
    cadence = json.loads(environ.get(ENV, "{}")).get("log_every", {})
    path = "/" + Path(out_dir).as_posix().strip("/") + "/"  # a relative or an absolute folder alike
    hits = [prefix for prefix in cadence if f"/{prefix}" in path]
    return cadence[max(hits, key=len)] if hits else DEFAULT_LOG_EVERY


def tracking(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The config's ``tracking`` (W&B, MLflow) with the study's ``group``; empty for a run started by hand."""
    return json.loads(environ.get(ENV, "{}")).get("tracking", {})

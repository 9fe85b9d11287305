"""Test hook: hold training processes still right after their first resume checkpoint.

With ``SPECTRAL_REACH_HOLD_AFTER_CHECKPOINT=<marker>`` in the environment (and this folder on
``PYTHONPATH``), the first ``checkpoint.save`` of a process writes the checkpoint, then writes
``<marker>`` (the checkpoint's path and the process id, one a line) and waits: for SIGKILL, or for
SIGTERM, which the training loop's own handler turns into a checkpoint and a clean stop. A test
that kills a job after a checkpoint then kills it at a known step whatever the machine's speed,
instead of racing the job to its end. ``SPECTRAL_REACH_HOLDS=k`` (default 1) lets the first k
processes hold, writing ``<marker>``, ``<marker>.2``, ...; later ones (and the resumed runs) go
through.
"""

import os
import sys

MARKER = os.environ.get("SPECTRAL_REACH_HOLD_AFTER_CHECKPOINT")
HOLDS = int(os.environ.get("SPECTRAL_REACH_HOLDS", "1"))


def _claim() -> str | None:
    """The marker this process may write, claimed atomically across processes; ``None`` if all are taken."""
    for k in range(1, HOLDS + 1):
        marker = MARKER if k == 1 else f"{MARKER}.{k}"
        try:
            os.close(os.open(marker + ".claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue
        return marker
    return None


def _hold(module) -> None:
    import signal
    import time

    real = module.save
    held = []

    def save(*args, **kwargs):
        saved = real(*args, **kwargs)
        if not held:
            held.append(True)  # a process holds at most once
            marker = _claim()
            if marker is not None:
                with open(marker + ".tmp", "w") as f:
                    f.write(f"{saved}\n{os.getpid()}\n")
                os.replace(marker + ".tmp", marker)
                loop = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)  # the loop's on_sigterm
                while not getattr(loop, "preempted", False):
                    time.sleep(0.01)
        return saved

    module.save = save


if MARKER:
    import importlib.abc
    import importlib.machinery

    class _Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "spectral_reach.train.checkpoint":
                return None
            sys.meta_path.remove(self)
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                _hold(module)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _Finder())

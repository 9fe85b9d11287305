"""Test hook: hold a training process still right after its first resume checkpoint.

With ``SPECTRAL_REACH_HOLD_AFTER_CHECKPOINT=<marker>`` in the environment (and this folder on
``PYTHONPATH``), the first ``checkpoint.save`` of a process writes the checkpoint, creates
``<marker>`` and then waits: for SIGKILL, or for SIGTERM, which the training loop's own handler
turns into a checkpoint and a clean stop. A test that kills a job after a checkpoint then
kills it at a known step whatever the machine's speed, instead of racing the job to its end.
Only the first process to reach a checkpoint holds (the marker exists afterwards), so the
resumed run goes through.
"""

import os
import sys

MARKER = os.environ.get("SPECTRAL_REACH_HOLD_AFTER_CHECKPOINT")


def _hold(module) -> None:
    import signal
    import time
    from pathlib import Path

    real = module.save

    def save(*args, **kwargs):
        saved = real(*args, **kwargs)
        marker = Path(MARKER)
        if not marker.exists():
            marker.write_text(str(saved))
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

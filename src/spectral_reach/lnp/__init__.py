"""The loss-network-position (LNP) decomposition of a training step.

Public API: :func:`measure` and its :class:`LNPRecord`, :func:`log_windows`, the oracle module
:mod:`spectral_reach.lnp.ntk`, and :func:`register_norm_rule` for layers we do not cover.
This subpackage imports nothing else of ``spectral_reach``.
"""

from .errors import UnsupportedModelError
from .measure import DEFAULT_SEED, LNPRecord, LogitsOnly, measure
from .persample import PerSampleNorms
from .rules import register_norm_rule
from .units import count_loss_units
from .windows import Window, log_windows, step_windows

__all__ = [
    "DEFAULT_SEED",
    "LNPRecord",
    "LogitsOnly",
    "PerSampleNorms",
    "UnsupportedModelError",
    "Window",
    "count_loss_units",
    "log_windows",
    "measure",
    "register_norm_rule",
    "step_windows",
]

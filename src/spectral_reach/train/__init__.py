"""The training loop shared by language-model and probe runs, with checkpoint and resume."""

from ..models.llama import lm_loss
from . import fingerprint
from .guards import NonFiniteLoss
from .lm import RunSpec, train
from .loop import Preempted

__all__ = ["fingerprint", "NonFiniteLoss", "Preempted", "RunSpec", "lm_loss", "train"]

"""The training loop shared by language-model and probe runs, with checkpoint and resume."""

from .loop import NonFiniteLoss, Preempted, RunSpec, lm_loss, train

__all__ = ["NonFiniteLoss", "Preempted", "RunSpec", "lm_loss", "train"]

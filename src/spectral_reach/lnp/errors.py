"""The measurement's own error types."""


class UnsupportedModelError(ValueError):
    """The model breaks an assumption of the per-sample measurement; the message says how to fix it."""

"""Log-spaced measurement windows (paper App. B.1, B.2).

Window ``w`` covers the ``width`` consecutive steps ``[s_w, s_w + width)`` with starts

    s = 0, and round(10^(k / per_decade)) for k = 0, 1, 2, ...  while s < total_steps,

duplicates removed and every window clipped at ``total_steps``; then, unless the last of them
already ends there, a last window ``[total_steps - width, total_steps)`` ending at the final step,
so the measurement covers the run to its end whatever ``per_decade`` gives (the paper's curves run
to the end of training). Early windows overlap; a step inside several windows is measured once and
belongs to the earliest of them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    index: int
    start: int
    stop: int  # exclusive


def log_windows(total_steps: int, per_decade: int, width: int) -> list[Window]:
    """Windows of ``width`` steps at log-spaced starts, ``per_decade`` starts per decade, step 0 first."""
    for name, value in (("total_steps", total_steps), ("per_decade", per_decade), ("width", width)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    starts = [0]
    k = 0
    while (s := round(10 ** (k / per_decade))) < total_steps:
        if s > starts[-1]:
            starts.append(s)
        k += 1
    if min(starts[-1] + width, total_steps) < total_steps:
        starts.append(total_steps - width)
    return [Window(i, s, min(s + width, total_steps)) for i, s in enumerate(starts)]


def step_windows(windows: list[Window]) -> dict[int, int]:
    """``{step: index of the earliest window containing it}`` for every measured step."""
    out: dict[int, int] = {}
    for w in windows:
        for step in range(w.start, w.stop):
            out.setdefault(step, w.index)
    return dict(sorted(out.items()))

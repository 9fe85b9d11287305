"""One LNP measurement's record, from the two sides' sums (the formulas of :mod:`.measure`).

With ``g_sq = ||g_B||^2``, ``j_sq = ||J_B||_F^2`` and ``n`` loss units on each side:

    chi_loss = sqrt(n g_sq n' g_sq'),   chi_net = sqrt(j_sq / n * j_sq' / n'),
    chi_pos  = delta / sqrt(g_sq g_sq' j_sq j_sq')

and per parameter group ``G`` (:mod:`.split`), with the whole's ``chi_loss``:

    chi_net_G = sqrt(j_sq_G / n * j_sq_G' / n'),   chi_pos_G = delta_G / sqrt(g_sq g_sq' j_sq_G j_sq_G')
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class GroupLNP:
    """One parameter group's share of a measurement (:mod:`.split`): its columns of ``J``.

    ``weight = chi_net_raw_G / chi_net_raw``, so that ``chi_pos = sum_G weight_G chi_pos_G``."""

    delta: float
    j_sq: float
    j_sq_measure: float
    chi_net: float
    chi_net_raw: float
    chi_pos: float
    weight: float


@dataclass(frozen=True)
class LNPRecord:
    """One LNP measurement. Scalars are Python floats; ``*_measure`` refer to ``B'``.

    ``delta_update`` is ``< grad L_B' , u >`` for the update ``u`` passed to ``measure`` (NaN
    without one); ``groups`` holds each parameter group's :class:`GroupLNP` (empty without a split).
    """

    delta: float
    chi_loss: float
    chi_net: float
    chi_pos: float
    chi_loss_raw: float
    chi_net_raw: float
    loss: float
    loss_measure: float
    g_sq: float
    g_sq_measure: float
    j_sq: float
    j_sq_measure: float
    n_units: int
    n_units_measure: int
    batch_size: int
    batch_size_measure: int
    hutchinson: int
    variant: str
    j_sq_draws: tuple[float, ...]
    j_sq_draws_measure: tuple[float, ...]
    delta_update: float = math.nan
    groups: dict[str, GroupLNP] = field(default_factory=dict)

    def as_row(self) -> dict[str, float | int | str]:
        """The scalar fields, for one row of a tidy table."""
        row = asdict(self)
        del row["j_sq_draws"], row["j_sq_draws_measure"], row["groups"]
        return row

    def group_rows(self) -> list[dict[str, float | str]]:
        """One row per parameter group (long form): ``group`` and its :class:`GroupLNP` fields."""
        return [{"group": name, **asdict(g)} for name, g in self.groups.items()]

    @property
    def finite(self) -> bool:
        return all(math.isfinite(v) for v in (self.delta, self.chi_loss, self.chi_net, self.chi_pos))


@dataclass
class SideSums:
    """A side's sums as Python numbers."""

    loss: float
    g_sq: float
    j_sq: float
    j_draws: tuple[float, ...]
    n_units: int
    batch_size: int
    j_groups: tuple[float, ...] = ()  # ||J||_F^2 per parameter group (one entry without a split)


def _ratio(num: float, den: float) -> float:
    return num / den if den != 0 else math.nan


def _groups(
    side: SideSums, other: SideSums, names: list[str], deltas: list[float], chi_loss_raw: float, chi_net_raw: float
) -> dict[str, GroupLNP]:
    out = {}
    for name, delta, j, j_m in zip(names, deltas, side.j_groups, other.j_groups):
        raw = math.sqrt(j * j_m)
        out[name] = GroupLNP(
            delta=delta,
            j_sq=j,
            j_sq_measure=j_m,
            chi_net=math.sqrt(_ratio(j, side.n_units) * _ratio(j_m, other.n_units)),
            chi_net_raw=raw,
            chi_pos=_ratio(delta, chi_loss_raw * raw),
            weight=_ratio(raw, chi_net_raw),
        )
    return out


def record(
    side: SideSums,
    other: SideSums,
    delta: float,
    hutchinson: int | None,
    cross: bool,
    delta_update: float = math.nan,
    group_names: list[str] | None = None,
    group_deltas: list[float] = (),
) -> LNPRecord:
    """The record from the two sides' sums (the module docstring's formulas)."""
    chi_loss_raw = math.sqrt(side.g_sq * other.g_sq)
    chi_net_raw = math.sqrt(side.j_sq * other.j_sq)
    groups = _groups(side, other, group_names, group_deltas, chi_loss_raw, chi_net_raw) if group_names else {}
    return LNPRecord(
        delta=delta,
        chi_loss=math.sqrt(side.n_units * side.g_sq * other.n_units * other.g_sq),
        chi_net=math.sqrt(_ratio(side.j_sq, side.n_units) * _ratio(other.j_sq, other.n_units)),
        chi_pos=_ratio(delta, chi_loss_raw * chi_net_raw),
        chi_loss_raw=chi_loss_raw,
        chi_net_raw=chi_net_raw,
        loss=side.loss,
        loss_measure=other.loss,
        g_sq=side.g_sq,
        g_sq_measure=other.g_sq,
        j_sq=side.j_sq,
        j_sq_measure=other.j_sq,
        n_units=side.n_units,
        n_units_measure=other.n_units,
        batch_size=side.batch_size,
        batch_size_measure=other.batch_size,
        hutchinson=0 if hutchinson is None else hutchinson,
        variant="cross" if cross else "self",
        j_sq_draws=side.j_draws,
        j_sq_draws_measure=other.j_draws,
        delta_update=delta_update,
        groups=groups,
    )

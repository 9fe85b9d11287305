"""Which config a run folder's results were made under.

The claims table, the last job of every run (it reads every section's summaries), records the
config's result-shaping part in ``results/claims.json`` and takes it as a param, so any
edit of that part reruns it. A report built with ``snakemake --report`` under a config whose part
differs from that record (an overlay forgotten, an edit not yet run) would show figures and tables
of another config; the workflow refuses it, naming the keys that differ (:func:`report_problem`).

Not part of a result: how runs log and where they send curves (``log_every``, ``tracking``), the
figures' style (``figures``) and the report's note (``report_note``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

#: Where the claims table records the config its run was made under.
RECORD = "results/claims.json"
#: Keys that shape no number, at any depth.
NOT_RESULT = frozenset({"log_every", "tracking", "figures", "report_note"})


def result_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` without the keys of :data:`NOT_RESULT` (at any depth), as canonical JSON values."""

    def prune(node: Any) -> Any:
        if isinstance(node, Mapping):
            return {k: prune(v) for k, v in node.items() if k not in NOT_RESULT}
        return [prune(v) for v in node] if isinstance(node, (list, tuple)) else node

    return json.loads(json.dumps(prune(config), sort_keys=True))


def differences(a: Any, b: Any, prefix: str = "") -> Iterator[str]:
    """The dotted keys where two configs differ (a key one of them lacks included)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            yield from differences(a.get(k), b.get(k), f"{prefix}{k}.")
    elif a != b:
        yield prefix.rstrip(".")


def report_problem(config: Mapping[str, Any], record: str | os.PathLike = RECORD) -> str | None:
    """Why a report of this run folder under ``config`` would show another config's results, or
    ``None`` (no record yet: nothing to compare)."""
    path = Path(record)
    if not path.exists():
        return None
    made = json.loads(path.read_text())["config"]
    changed = list(differences(made, result_config(config)))
    if not changed:
        return None
    shown = ", ".join(changed[:8]) + (f" and {len(changed) - 8} more" if len(changed) > 8 else "")
    return (
        f"the results in this run folder were made under another config ({record}): it differs in {shown}. "
        "Run snakemake with this config first (it reruns what the edit touches), or build the report with "
        "the config the results were made under (the same --configfile files)"
    )

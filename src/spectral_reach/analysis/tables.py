"""Tables 1-4: the model sizes of a config with their measured parameter counts.

A size's name is the paper's label (``'1.2M'``); ``params`` is counted on the model we build,
``rel_diff`` against the label, and ``note`` says when the count does not round to it (for
language models, also whether the other ``tied`` setting would). Rows go by parameter count, as
the paper's tables do (the rule's params list sizes by name: '102.6K' would follow '1.1M').
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from .lm import label_matches, label_params


def _compare(name: str, params: int) -> dict[str, Any]:
    table = label_params(name)
    return {"params": params, "paper_params": table, "rel_diff": None if table is None else params / table - 1}


def lm_table(sizes: dict[str, dict], vocab_size: int, tolerance: float) -> pd.DataFrame:
    """Tables 1-2: one row per Llama size."""
    from ..models.llama import count_parameters

    rows = []
    for name, size in sizes.items():
        params = count_parameters(size, vocab_size)
        row = {
            "size": name,
            **{k: size[k] for k in ("layers", "hidden", "ff", "heads")},
            "head_dim": size.get("head_dim", size["hidden"] // size["heads"]),
            "tied": size.get("tied", False),
            "lr": size["lr"],
            **_compare(name, params),
            "note": "",
        }
        if row["paper_params"] is not None and not label_matches(name, params, tolerance):
            other = count_parameters({**size, "tied": not row["tied"]}, vocab_size)
            row["note"] = (
                f"matches only with tied={not row['tied']} ({other:,} parameters)"
                if label_matches(name, other, tolerance)
                else "does not match the paper's count"
            )
        rows.append(row)
    return pd.DataFrame(rows).sort_values("params", kind="stable", ignore_index=True)


def vit_table(sizes: dict[str, dict[str, dict]], tolerance: float) -> pd.DataFrame:
    """Tables 3-4: one row per ViT size and parametrization."""
    from ..models.vit import count_parameters

    rows = []
    for parametrization, by_name in sizes.items():
        for name, size in by_name.items():
            row = {
                "parametrization": parametrization,
                "size": name,
                **{k: size[k] for k in ("patch", "hidden", "mlp", "heads", "layers", "lr")},
                **_compare(name, count_parameters(size)),
            }
            matches = row["paper_params"] is None or label_matches(name, row["params"], tolerance)
            rows.append({**row, "note": "" if matches else "does not match the paper's count"})
    table = pd.DataFrame(rows)
    by_kind = [g.sort_values("params", kind="stable") for _, g in table.groupby("parametrization", sort=False)]
    return pd.concat(by_kind, ignore_index=True)

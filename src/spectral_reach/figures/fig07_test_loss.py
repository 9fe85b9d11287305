"""Fig. 7: final test loss vs parameters per data set, with a fitted power law (App. D.1)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from ..analysis.claims import by_size, decreasing, final
from . import style
from .panels import scaling_panel


def plot(
    data: dict[str, pd.DataFrame], fits: pd.DataFrame, pdf: str, png: str, *, width: float, height: float, dpi: int
) -> None:
    """``data``: data set -> runs table; ``fits``: each data set's test-loss fit."""
    style.setup()
    fig, axes = plt.subplots(1, len(data), figsize=(style.per_dataset(width, len(data)), height), squeeze=False)
    for ax, (name, runs) in zip(axes[0], data.items()):
        scaling_panel(ax, runs, "final_test_loss", name, fits.set_index("dataset").loc[name].to_dict())
        ax.set_ylabel("final test loss")
    fig.tight_layout()
    style.save(fig, pdf, png, dpi)


def caption_values(data: dict[str, pd.DataFrame], fits: pd.DataFrame) -> dict:
    """Per data set: the test-loss fit and the final test loss per size."""
    out = []
    for name, runs in data.items():
        loss = final(runs, "final_test_loss")
        out.append(
            {
                **fits[fits["dataset"] == name].iloc[0].to_dict(),
                "name": name,
                "sizes": list(by_size(runs).index),
                "loss": loss,
                "loss_ordered": decreasing(loss),
            }
        )
    return {"datasets": out}

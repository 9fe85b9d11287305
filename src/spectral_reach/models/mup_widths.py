"""The widths of a muP Llama (:mod:`.llama_mup`): its base and delta shapes, and which sizes and
settings it can build. Imports nothing heavy, so the config checks run it while Snakemake parses."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError

#: The settings a muP Llama needs (config ``lm.<data set>.variants.<name>.mup``).
SETTINGS = ("base_width", "init_std", "output_mult")


def check(size: dict[str, Any], mup: dict[str, Any]) -> None:
    """Settings and a size muP can build: all of :data:`SETTINGS`, and :func:`check_size`."""
    missing = [k for k in SETTINGS if k not in (mup or {})]
    if missing:
        raise ConfigError(f"init mup needs mup settings {', '.join(missing)} (base_width, init_std, output_mult)")
    check_size(size, mup["base_width"])


def check_size(size: dict[str, Any], base_width: int) -> None:
    """A size muP can build from ``base_width``: an even head size at the base and delta widths
    (rotary embeddings)."""
    for width in (base_width, 2 * base_width):
        shape = at_width(size, width)
        head = shape.get("head_dim", width // shape["heads"])
        if head < 2 or head % 2:
            raise ConfigError(
                f"mup.base_width={base_width}: at width {width} the {shape['heads']} heads are {head} wide, "
                "and rotary embeddings need an even head size; raise base_width"
            )


def at_width(size: dict[str, Any], width: int) -> dict[str, Any]:
    """``size`` at another width with the same MLP ratio, as the config's sizes grow: the same heads,
    each ``width / heads`` wide (an explicit ``head_dim`` kept, the heads scaled instead). muP's base
    and delta shapes: every dimension that grows with the width here is one muP scales."""
    out = {**size, "hidden": width, "ff": max(1, width * size["ff"] // size["hidden"])}
    if "head_dim" in size:
        out["heads"] = max(1, width * size["heads"] // size["hidden"])
    return out

"""A figure's report caption: its template in ``workflow/report/`` (what the figure shows and what the
paper claims) rendered with what this run measured.

Templates are Jinja2, the engine Snakemake renders captions with; the filter ``g`` formats a number
with 3 significant digits (``{{ x | g }}``, ``{{ x | g(2) }}``). A template naming a value the figure
does not measure fails, naming the template and the values there are.
"""

from __future__ import annotations

import math
from pathlib import Path

import jinja2

from ..io import atomic_file


def number(x: float, digits: int = 3) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"


def render(template: str | Path, out: str | Path, values: dict) -> None:
    """Write ``template`` rendered with ``values`` to ``out`` (atomically)."""
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True
    )
    env.filters["g"] = number
    try:
        text = env.from_string(Path(template).read_text()).render(**values)
    except jinja2.UndefinedError as e:
        raise SystemExit(
            f"caption template {template}: {e}; this figure measures: {', '.join(sorted(values))}"
        ) from None
    except jinja2.TemplateSyntaxError as e:
        raise SystemExit(f"caption template {template}, line {e.lineno}: {e.message}") from None
    with atomic_file(out) as tmp:
        tmp.write_text(text)

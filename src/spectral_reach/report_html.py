"""Tables as pages of the Snakemake report: readable inside the report, not only as CSV downloads
(Snakemake shows an HTML output in place)."""

from __future__ import annotations

import html
import math
import numbers

import pandas as pd

STYLE = (
    "body{font-family:sans-serif;font-size:13px}table{border-collapse:collapse}"
    "td,th{border:1px solid #bbb;padding:3px 6px;vertical-align:top}td.n{text-align:right}"
)


def page(title: str, body: str) -> str:
    """A standalone HTML page: ``title`` as its heading, then ``body``."""
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><h2>{html.escape(title)}</h2>{body}</body></html>\n"
    )


def cell(value: object) -> str:
    """A table cell: whole numbers in full, others in 4 significant digits, right-aligned; missing
    values empty."""
    if value is None or value is pd.NA or (isinstance(value, numbers.Real) and math.isnan(value)):
        return "<td></td>"
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        whole = float(value).is_integer() and abs(value) < 1e15
        return f'<td class="n">{int(value) if whole else format(value, ".4g")}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def table_page(df: pd.DataFrame, title: str) -> str:
    """``df`` as a page: one row per row, its columns as the header."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in df.itertuples(index=False))
    return page(title, f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")

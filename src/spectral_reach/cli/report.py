"""Tables as pages of the report (spectral_reach.report_html)."""

from __future__ import annotations

import argparse

import pandas as pd

from ..io import atomic_file
from .common import command


def table_html(a: argparse.Namespace) -> None:
    from ..report_html import table_page

    with atomic_file(a.html) as tmp:
        tmp.write_text(table_page(pd.read_csv(a.csv), a.title))


def register(sub) -> None:
    command(sub, "table-html", table_html, "a CSV table as an HTML page of the report", csv={}, html={}, title={})

"""Writing files so that a killed job never leaves a finished-looking partial one."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pandas as pd


@contextmanager
def atomic_file(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside ``path`` (ending in ``suffix``) to write to; renamed to ``path`` when the
    block ends, removed if it raises, so a killed job never leaves a finished-looking partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{suffix}")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a table by extension (.parquet, .csv or .md), atomically."""
    suffix = Path(path).suffix
    with atomic_file(path) as tmp:
        if suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        elif suffix == ".md":
            tmp.write_text(df.to_markdown(index=False, floatfmt=".4g") + "\n")
        else:
            df.to_csv(tmp, index=False)

"""The one on-disk format of every prepared data set: a flat binary array plus a JSON sidecar.

``name.bin`` holds the raw little-endian values (``np.memmap`` reads it without loading it);
``name.json`` holds ``dtype``, ``shape`` and provenance (vocabulary size, token count, source and
tokenizer hashes). Writers stream chunks to temporary files and rename both files only when the
whole array is written, so a killed job never leaves a partial array that looks finished.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np


class DataError(RuntimeError):
    """A data file is missing, malformed or inconsistent; the message says which and how to fix it."""


def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(path).with_suffix(".json")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class MemmapWriter:
    """Append rows of a fixed shape and dtype; ``close()`` publishes ``.bin`` and ``.json`` together.

    Used as a context manager: on an exception both temporary files are removed.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        dtype: np.dtype | str,
        row_shape: tuple[int, ...] = (),
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.row_shape = tuple(row_shape)
        self.meta = dict(meta or {})
        self.rows = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        self._file = open(self._tmp, "wb")

    def write(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows)
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"{self.path}: rows of shape {rows.shape[1:]}, expected {self.row_shape}")
        if np.issubdtype(self.dtype, np.integer) and rows.size:
            info = np.iinfo(self.dtype)
            lo, hi = int(rows.min()), int(rows.max())
            if lo < info.min or hi > info.max:
                raise DataError(f"{self.path}: values in [{lo}, {hi}] do not fit {self.dtype.name}")
        self._file.write(np.ascontiguousarray(rows, dtype=self.dtype).tobytes())
        self.rows += rows.shape[0]

    def close(self, **meta: Any) -> None:
        self._file.close()
        if self.rows == 0:
            self._tmp.unlink()
            raise DataError(f"{self.path}: nothing to write (empty input)")
        side = {"dtype": self.dtype.name, "shape": [self.rows, *self.row_shape], **self.meta, **meta}
        tmp_side = sidecar_path(self._tmp)
        tmp_side.write_text(json.dumps(side, indent=1, sort_keys=True) + "\n")
        self._tmp.replace(self.path)
        tmp_side.replace(sidecar_path(self.path))

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "MemmapWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def write_memmap(path: str | os.PathLike, array: np.ndarray, dtype: np.dtype | str, **meta: Any) -> None:
    """Write a whole array at once (small arrays; large ones go through :class:`MemmapWriter`)."""
    array = np.asarray(array)
    with MemmapWriter(path, dtype, array.shape[1:]) as w:
        w.write(array)
        w.close(**meta)


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    side = sidecar_path(path)
    if not Path(path).exists() or not side.exists():
        raise DataError(
            f"{path}: missing data file or its sidecar {side.name}; "
            "rerun the data rule that makes it (snakemake <that path>)"
        )
    try:
        return json.loads(side.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{side}: corrupt sidecar ({e}); delete {path} and its sidecar and rerun") from e


def read_memmap(path: str | os.PathLike) -> np.memmap:
    """Map ``path`` read-only with the dtype and shape of its sidecar, checking the file size."""
    meta = read_meta(path)
    dtype, shape = np.dtype(meta["dtype"]).newbyteorder("<"), tuple(meta["shape"])
    expected = int(np.prod(shape)) * dtype.itemsize
    actual = Path(path).stat().st_size
    if actual != expected:
        raise DataError(
            f"{path}: {actual} bytes, its sidecar says {shape} {dtype.name} = {expected} bytes "
            "(truncated or corrupt); delete it and rerun its data rule"
        )
    return np.memmap(path, dtype=dtype, mode="r", shape=shape)

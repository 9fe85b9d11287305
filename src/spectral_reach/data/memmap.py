"""The one on-disk format of every prepared data set: a flat binary array plus a JSON sidecar.

``name.bin`` holds the raw little-endian values (``np.memmap`` reads it without loading it);
``name.json`` holds ``dtype``, ``shape``, the ``sha256`` of ``name.bin`` and provenance (vocabulary
size, token count, source and tokenizer hashes). Writers stream chunks to temporary files, hashing
as they go, and rename both files only when the whole array is written, so a killed job never
leaves a partial array that looks finished. Readers check the size always and the checksum where
the file is small enough (:func:`verify`); a corrupted sidecar or file is a :class:`DataError`
that names it and the fix.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import DataError


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
        self._hash = hashlib.sha256()

    def write(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows)
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"{self.path}: rows of shape {rows.shape[1:]}, expected {self.row_shape}")
        if np.issubdtype(self.dtype, np.integer) and rows.size:
            info = np.iinfo(self.dtype)
            lo, hi = int(rows.min()), int(rows.max())
            if lo < info.min or hi > info.max:
                raise DataError(f"{self.path}: values in [{lo}, {hi}] do not fit {self.dtype.name}")
        data = np.ascontiguousarray(rows, dtype=self.dtype).tobytes()
        self._file.write(data)
        self._hash.update(data)
        self.rows += rows.shape[0]

    def close(self, **meta: Any) -> None:
        self._file.close()
        if self.rows == 0:
            self._tmp.unlink()
            raise DataError(f"{self.path}: nothing to write (empty input)")
        side = {
            "dtype": self.dtype.name,
            "shape": [self.rows, *self.row_shape],
            "sha256": self._hash.hexdigest(),
            **self.meta,
            **meta,
        }
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


def remake(path: str | os.PathLike) -> str:
    """The fix for a bad data file, for error messages."""
    return f"delete {path} and its sidecar {sidecar_path(path).name}, then rerun its data rule (snakemake {path})"


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    side = sidecar_path(path)
    if not Path(path).exists() or not side.exists():
        raise DataError(
            f"{path}: missing data file or its sidecar {side.name}; "
            "rerun the data rule that makes it (snakemake <that path>)"
        )
    try:
        meta = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{side}: corrupt sidecar ({e}); {remake(path)}") from e
    if not isinstance(meta, dict) or not isinstance(meta.get("dtype"), str) or not isinstance(meta.get("shape"), list):
        raise DataError(f"{side}: corrupt sidecar (no dtype and shape); {remake(path)}")
    return meta


def verify(path: str | os.PathLike, checksum_max_bytes: float) -> dict[str, Any]:
    """Check ``path`` against its sidecar before a job reads it: the size always, and the sha256
    where the sidecar records one and the file has at most ``checksum_max_bytes`` (hashing runs at
    about 0.5-1 GB/s, so a larger file is checked batch by batch instead, as it is read). What it
    checked, for the job's log."""
    meta = read_meta(path)
    read_memmap(path)
    size = Path(path).stat().st_size
    if "sha256" not in meta:
        return {"path": str(path), "bytes": size, "checked": "size (the sidecar has no sha256: older data)"}
    if size > checksum_max_bytes:
        return {"path": str(path), "bytes": size, "checked": f"size (over {checksum_max_bytes} bytes: not hashed)"}
    if (actual := sha256_file(path)) != meta["sha256"]:
        raise DataError(
            f"{path}: sha256 {actual[:12]}..., its sidecar says {meta['sha256'][:12]}...: the file changed after it "
            f"was written (corrupt or edited in place); {remake(path)}"
        )
    return {"path": str(path), "bytes": size, "checked": "size and sha256"}


def verify_all(paths: Mapping[str, str | os.PathLike], checksum_max_bytes: float) -> dict[str, dict[str, Any]]:
    """:func:`verify` of each ``.bin`` file among ``paths`` (``{role: path}``), by role."""
    return {role: verify(path, checksum_max_bytes) for role, path in paths.items() if str(path).endswith(".bin")}


def read_memmap(path: str | os.PathLike) -> np.memmap:
    """Map ``path`` read-only with the dtype and shape of its sidecar, checking the file size."""
    meta = read_meta(path)
    try:
        dtype, shape = np.dtype(meta["dtype"]).newbyteorder("<"), tuple(int(n) for n in meta["shape"])
    except (TypeError, ValueError) as e:
        raise DataError(f"{sidecar_path(path)}: corrupt sidecar ({e}); {remake(path)}") from e
    expected = int(np.prod(shape)) * dtype.itemsize
    actual = Path(path).stat().st_size
    if actual != expected:
        raise DataError(
            f"{path}: {actual} bytes, its sidecar says {shape} {dtype.name} = {expected} bytes "
            f"(truncated or corrupt); {remake(path)}"
        )
    return np.memmap(path, dtype=dtype, mode="r", shape=shape)

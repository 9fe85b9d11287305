"""CIFAR-5M parts (``partK.npz`` with ``X``: uint8 ``(N, 32, 32, 3)`` and ``Y``: labels) to memmaps.

Next-pixel task: grayscale by ITU-R BT.601 luma, ``Y = round(0.299 R + 0.587 G + 0.114 B)`` as
``uint8`` (rounded half up, in exact integer arithmetic: ``(299 R + 587 G + 114 B + 500) // 1000``), flattened row-major to 1024-token sequences (vocabulary 256). Classification task: the
RGB arrays and labels as they are. Parts are streamed from inside the ``.npz`` in chunks of rows,
so a 3 GB part is never held in memory even once.
"""

from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np

from ..io import atomic_file
from .memmap import DataError, MemmapWriter, sha256_file

log = logging.getLogger(__name__)

IMAGE_SHAPE = (32, 32, 3)
CLASSES = 10  # CIFAR-10's classes, which CIFAR-5M keeps
BT601_PER_MILLE = np.array([299, 587, 114])
#: Where the data set's authors publish the parts (github.com/preetum/cifar5m).
URL = "https://storage.googleapis.com/gresearch/cifar5m/part{part}.npz"


def grayscale(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of ``(..., 3)`` uint8 RGB, rounded half up, as uint8."""
    return ((rgb.astype(np.int32) @ BT601_PER_MILLE + 500) // 1000).astype(np.uint8)


def _member(z: zipfile.ZipFile, key: str, path: Path):
    name = f"{key}.npy"
    if name not in z.namelist():
        raise DataError(
            f"{path}: no array {key!r} (has {[n.removesuffix('.npy') for n in z.namelist()]}); "
            "a CIFAR-5M part holds 'X' (images) and 'Y' (labels)"
        )
    f = z.open(name)
    version = np.lib.format.read_magic(f)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(f)
    if fortran:
        raise DataError(f"{path}: {key} is stored in Fortran order; expected C order as published")
    return f, shape, dtype


def download(part: int, out: str | os.PathLike) -> None:
    """Fetch one published part, checking its format before it takes its final name."""
    import urllib.request

    url = URL.format(part=part)
    log.info("downloading %s", url)
    with atomic_file(out, suffix=".npz") as tmp:
        urllib.request.urlretrieve(url, tmp)
        part_size(tmp)


def part_size(path: str | os.PathLike) -> int:
    """Number of images in a part, checking keys, dtypes and shapes without reading the arrays."""
    path = Path(path)
    if not path.exists():
        raise DataError(
            f"{path}: no such CIFAR-5M part. Download part0.npz .. part5.npz from "
            f"{URL.format(part='K')} (or run the cifar5m_download rule) and set the config's path"
        )
    try:
        with zipfile.ZipFile(path) as z:
            fx, xshape, xdtype = _member(z, "X", path)
            fy, yshape, ydtype = _member(z, "Y", path)
            fx.close(), fy.close()
    except zipfile.BadZipFile as e:
        raise DataError(f"{path}: not a valid .npz ({e}); download it again") from e
    if xdtype != np.uint8 or tuple(xshape[1:]) != IMAGE_SHAPE:
        raise DataError(f"{path}: X is {xdtype} {xshape}, expected uint8 (N, 32, 32, 3)")
    if not np.issubdtype(ydtype, np.integer) or len(yshape) != 1 or yshape[0] != xshape[0]:
        raise DataError(f"{path}: Y is {ydtype} {yshape}, expected integer labels of shape ({xshape[0]},)")
    return int(xshape[0])


def read_part(path: str | os.PathLike, chunk: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(images, labels)`` of one part, ``chunk`` rows at a time."""
    n = part_size(path)
    with zipfile.ZipFile(path) as z:
        fx, _, xdtype = _member(z, "X", Path(path))
        fy, _, ydtype = _member(z, "Y", Path(path))
        labels = np.frombuffer(fy.read(n * ydtype.itemsize), dtype=ydtype)
        row_bytes = int(np.prod(IMAGE_SHAPE))
        for start in range(0, n, chunk):
            rows = min(chunk, n - start)
            buf = fx.read(rows * row_bytes)
            if len(buf) != rows * row_bytes:
                raise DataError(f"{path}: X ends after {start} images, its header says {n}; download it again")
            yield np.frombuffer(buf, dtype=np.uint8).reshape(rows, *IMAGE_SHAPE), labels[start : start + rows]


def convert(
    parts: list[str], out_dir: str | os.PathLike, split: str, chunk: int, start: int = 0, stop: int | None = None
) -> int:
    """Images ``start:stop`` of the concatenated parts as ``{split}.bin`` (grayscale sequences),
    ``{split}_rgb.bin`` and ``{split}_labels.bin``; returns the image count."""
    sizes = [part_size(p) for p in parts]
    total = sum(sizes)
    stop = total if stop is None else stop
    if not 0 <= start < stop <= total:
        raise DataError(f"{parts}: {total} images, cannot take images {start}:{stop} for split {split!r}")
    out_dir = Path(out_dir)
    meta = {"source_sha256": [sha256_file(p) for p in parts], "source_images": [start, stop]}
    with (
        MemmapWriter(out_dir / f"{split}.bin", np.uint8, (1024,), meta) as gray,
        MemmapWriter(out_dir / f"{split}_rgb.bin", np.uint8, IMAGE_SHAPE, meta) as rgb,
        MemmapWriter(out_dir / f"{split}_labels.bin", np.uint8, (), meta) as lab,
    ):
        seen = 0
        for path in parts:
            for x, y in read_part(path, chunk):
                lo, hi = max(start - seen, 0), min(stop - seen, len(x))
                seen += len(x)
                if lo >= hi:
                    continue
                gray.write(grayscale(x[lo:hi]).reshape(hi - lo, 1024))
                rgb.write(x[lo:hi])
                lab.write(y[lo:hi])
                log.info("%s %s: %d / %d images", split, path, gray.rows, stop - start)
        gray.close(
            kind="sequences", vocab_size=256, tokens=gray.rows * 1024, grayscale="ITU-R BT.601 luma, rounded half up"
        )
        rgb.close(kind="images")
        lab.close(kind="labels", classes=CLASSES)
    return stop - start

"""Synthetic 32x32 RGB images with natural-image statistics and ten shape classes, seeded.

Background: a Gaussian random field with amplitude spectrum ``|k|^-a`` (power ``|k|^-2a``;
natural images have ``2a`` near 2), ``a`` drawn per image from ``exponent`` = ``[lo, hi]``, its
three channels mixed by a random colour matrix. Foreground: one shape whose type is the class
label (disc, square, triangle, ring, horizontal bar, vertical bar, cross, diamond, two discs,
frame) at a random place, size and colour. ``background`` scales the field's amplitude (1: the
CIFAR-5M twin; below 1 the shapes stand out, a classification task small ViTs learn in minutes;
the random stream does not depend on it). Saved as CIFAR-5M parts (``X``: uint8
``(N, 32, 32, 3)``, ``Y``: int64 labels), so they take the real conversion path.
"""

from __future__ import annotations

import os

import numpy as np

from ..io import atomic_file

SIZE = 32
CLASSES = 10


def _fields(rng: np.random.Generator, n: int, exponent: tuple[float, float]) -> np.ndarray:
    """``(n, 32, 32, 3)`` fields in about [-1, 1] with spectrum ``|k|^-a``."""
    k = np.fft.fftfreq(SIZE)
    kk = np.sqrt(k[:, None] ** 2 + k[None, :] ** 2)
    kk[0, 0] = np.inf
    a = rng.uniform(*exponent, size=(n, 1, 1, 1))
    white = np.fft.fft2(rng.standard_normal((n, 3, SIZE, SIZE)))
    f = np.fft.ifft2(white * kk[None, None] ** -a).real
    f /= f.std(axis=(2, 3), keepdims=True) * 3
    mix = rng.normal(0.0, 0.6, size=(n, 3, 3)) + np.eye(3)
    return np.einsum("ncij,ndc->nijd", f, mix)


def _masks(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """``(n, 32, 32)`` boolean masks: the shape of each image's class."""
    n = len(labels)
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(float)
    r = rng.uniform(5, 10, size=(n, 1, 1))
    cy, cx = (rng.uniform(10, 22, size=(n, 1, 1)) for _ in range(2))
    dy, dx = y - cy, x - cx
    w = r / 3
    shapes = [
        dy**2 + dx**2 <= r**2,
        (abs(dy) <= r * 0.8) & (abs(dx) <= r * 0.8),
        (dy <= r * 0.7) & (abs(dx) <= (dy + r) * 0.6),
        (dy**2 + dx**2 <= r**2) & (dy**2 + dx**2 >= (r * 0.6) ** 2),
        (abs(dy) <= w) & (abs(dx) <= r * 1.2),
        (abs(dx) <= w) & (abs(dy) <= r * 1.2),
        ((abs(dy) <= w) | (abs(dx) <= w)) & (abs(dy) <= r) & (abs(dx) <= r),
        abs(dy) + abs(dx) <= r,
        ((dy**2 + (dx - r / 2) ** 2) <= (r / 2) ** 2) | ((dy**2 + (dx + r / 2) ** 2) <= (r / 2) ** 2),
        (np.maximum(abs(dy), abs(dx)) <= r * 0.9) & (np.maximum(abs(dy), abs(dx)) >= r * 0.9 - w),
    ]
    return np.stack(shapes)[labels, np.arange(n)]


def images(
    rng: np.random.Generator, n: int, exponent: tuple[float, float], background: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images (uint8 ``(n, 32, 32, 3)``) and their class labels."""
    labels = rng.integers(0, CLASSES, size=n)
    img = _fields(rng, n, exponent) * background
    color = rng.uniform(-1, 1, size=(n, 1, 1, 3))
    img = np.where(_masks(rng, labels)[..., None], color, img)
    return np.rint((img.clip(-1, 1) + 1) * 127.5).astype(np.uint8), labels.astype(np.int64)


def generate(
    out: str | os.PathLike,
    part: int,
    images_per_part: int,
    seed: int,
    exponent: tuple[float, float],
    chunk: int = 2000,
    background: float = 1.0,
) -> None:
    """Write part ``part`` as a CIFAR-5M ``.npz``; it uses the random stream ``(seed, part)`` alone."""
    rng = np.random.default_rng([seed, part])
    xs, ys = zip(
        *(images(rng, min(chunk, images_per_part - s), exponent, background) for s in range(0, images_per_part, chunk))
    )
    with atomic_file(out, suffix=".npz") as tmp:  # np.savez appends .npz to other names
        np.savez(tmp, X=np.concatenate(xs), Y=np.concatenate(ys))

"""Token contexts for next-token training, in one fixed order that depends only on the data seed.

A split is a ``stream`` (text: contexts are consecutive windows of ``context_length`` tokens) or
``sequences`` (images: each row is one context, cut to ``context_length``). A context ``c`` gives
inputs ``c[:-1]`` and targets ``c[1:]``. Step ``s`` of training reads contexts
``order[s * B : (s + 1) * B]`` of a permutation drawn from ``data_seed``, so every model seed sees
the same data in the same order, and a resumed run continues from the step alone.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor

from .memmap import DataError, read_memmap, read_meta, remake


def check_ids(
    path: str | os.PathLike, values: np.ndarray, index: np.ndarray, row_len: int, limit: int | None, what: str
) -> None:
    """Refuse a batch holding a value outside ``[0, limit)`` (a token id beyond the vocabulary, a
    label beyond the classes) before it reaches a model: a corrupt file would otherwise surface as
    an ``IndexError`` inside ``torch.embedding``, naming neither. ``values[i]`` is row ``index[i]``
    of the file, whose rows hold ``row_len`` values."""
    if limit is None or values.size == 0 or int(values.max()) < limit:
        return
    i, *j = np.argwhere(values >= limit)[0]
    at = int(index[i]) * row_len + (int(j[0]) if j else 0)
    raise DataError(
        f"{path}: {what} {int(values[(i, *j)])} at value offset {at} (byte {at * values.dtype.itemsize}), outside "
        f"the {limit} of its sidecar: the file is corrupt; {remake(path)}"
    )


class Contexts:
    """The contexts of one prepared split (``.bin`` + sidecar)."""

    def __init__(self, path: str | os.PathLike, context_length: int) -> None:
        self.path = path
        self.tokens = read_memmap(path)
        kind = read_meta(path).get("kind")
        if kind not in ("stream", "sequences"):
            raise DataError(f"{path}: sidecar kind {kind!r} is not a token split (stream or sequences)")
        if kind == "stream":
            self.count = len(self.tokens) // context_length
        else:
            if context_length > self.tokens.shape[1]:
                raise DataError(
                    f"{path}: sequences of {self.tokens.shape[1]} tokens, shorter than context_length={context_length}"
                )
            self.count = len(self.tokens)
        self.kind, self.context_length = kind, context_length
        self.vocab_size = read_meta(path).get("vocab_size")
        self.what = f"contexts of {context_length} tokens"
        if self.count == 0:
            raise DataError(f"{path}: not one context of {context_length} tokens")

    def __len__(self) -> int:
        return self.count

    def get(self, index: np.ndarray) -> tuple[Tensor, Tensor]:
        """``(inputs, targets)`` as contiguous int64 tensors of shape ``(len(index), L - 1)``."""
        L = self.context_length
        index = np.asarray(index)
        if self.kind == "stream":
            rows = self.tokens[index[:, None] * L + np.arange(L)]
            check_ids(self.path, rows, index, L, self.vocab_size, "token id")
        else:
            rows = self.tokens[index, :L]
            check_ids(self.path, rows, index, self.tokens.shape[1], self.vocab_size, "token id")
        ctx = torch.from_numpy(rows.astype(np.int64))
        return ctx[:, :-1].contiguous(), ctx[:, 1:].contiguous()


class Images:
    """Labelled RGB images of one converted split (``{split}_rgb.bin`` + ``{split}_labels.bin``).

    ``get`` gives ``(pixels, labels)``: float32 ``(n, 3, 32, 32)`` scaled to ``[-1, 1]`` and int64.
    Duck-types :class:`Contexts` for :class:`TrainOrder` and :class:`FixedSet`.
    """

    def __init__(self, rgb: str | os.PathLike, labels: str | os.PathLike) -> None:
        self.path, self.labels_path = rgb, labels
        self.images, self.labels = read_memmap(rgb), read_memmap(labels)
        for path, kind in ((rgb, "images"), (labels, "labels")):
            if read_meta(path).get("kind") != kind:
                raise DataError(f"{path}: sidecar kind {read_meta(path).get('kind')!r}, expected {kind!r}")
        if len(self.images) != len(self.labels):
            raise DataError(f"{rgb}: {len(self.images)} images but {labels} has {len(self.labels)} labels")
        self.classes = read_meta(labels).get("classes")
        self.what = "images"

    def __len__(self) -> int:
        return len(self.images)

    def get(self, index: np.ndarray) -> tuple[Tensor, Tensor]:
        index = np.asarray(index)
        x = torch.from_numpy(self.images[index]).permute(0, 3, 1, 2).float() / 127.5 - 1
        labels = np.asarray(self.labels[index])
        check_ids(self.labels_path, labels, index, 1, self.classes, "label")
        return x.contiguous(), torch.from_numpy(labels.astype(np.int64))


class TrainOrder:
    """Batches of ``passes`` passes over ``contexts``, each in its own order drawn from ``data_seed``
    (the first pass's order is the same for any number of passes)."""

    def __init__(self, contexts: Contexts | Images, batch_size: int, data_seed: int, passes: int = 1) -> None:
        self.contexts, self.batch_size = contexts, batch_size
        per_pass = len(contexts) // batch_size * batch_size
        self.order = np.concatenate(
            [
                np.random.default_rng(data_seed if k == 0 else [data_seed, k]).permutation(len(contexts))[:per_pass]
                for k in range(passes)
            ]
        )
        self.steps = len(self.order) // batch_size

    def batch(self, step: int) -> tuple[Tensor, Tensor]:
        if not 0 <= step < self.steps:
            raise IndexError(f"step {step} outside the single pass of {self.steps} steps")
        return self.contexts.get(self.order[step * self.batch_size : (step + 1) * self.batch_size])


class FixedSet:
    """The first ``size`` contexts of a split: the measurement set ``B'`` or the test set."""

    def __init__(self, contexts: Contexts | Images, size: int, key: str) -> None:
        if size > len(contexts):
            raise DataError(f"{key}={size}, but {contexts.path} has only {len(contexts)} {contexts.what}")
        self.contexts, self.size = contexts, size

    def draw(self, batch_size: int, seed: int, step: int) -> tuple[Tensor, Tensor]:
        """A batch drawn without replacement, reproducible from ``(seed, step)`` alone."""
        idx = np.random.default_rng([seed, step]).choice(self.size, size=batch_size, replace=False)
        return self.contexts.get(idx)

    def chunks(self, batch_size: int):
        for start in range(0, self.size, batch_size):
            yield self.contexts.get(np.arange(start, min(start + batch_size, self.size)))

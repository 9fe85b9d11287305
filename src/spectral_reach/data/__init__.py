"""Readers and writers of the on-disk data formats: SimpleStories, CIFAR-5M and generated twins."""

from .batches import Contexts, FixedSet, Images, TrainOrder
from .memmap import DataError, MemmapWriter, read_memmap, read_meta, write_memmap

__all__ = [
    "Contexts",
    "DataError",
    "FixedSet",
    "Images",
    "MemmapWriter",
    "TrainOrder",
    "read_memmap",
    "read_meta",
    "write_memmap",
]

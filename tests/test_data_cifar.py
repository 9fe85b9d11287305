"""CIFAR-5M conversion on small parts in the published npz format; synthetic generators."""

from __future__ import annotations

import numpy as np
import pytest

from spectral_reach.data import DataError, cifar5m, read_memmap, read_meta, synthetic_images, synthetic_text


def write_part(path, n, seed, **override):
    rng = np.random.default_rng(seed)
    arrays = {"X": rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8), "Y": rng.integers(0, 10, size=n)}
    arrays.update(override)
    np.savez(path, **arrays)
    return arrays


def test_grayscale_is_bt601_luma_rounded():
    rgb = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [10, 20, 30], [0, 0, 0]], dtype=np.uint8)
    # 0.299*255 = 76.245, 0.587*255 = 149.685, 0.114*255 = 29.07, 2.99 + 11.74 + 3.42 = 18.15
    assert cifar5m.grayscale(rgb).tolist() == [76, 150, 29, 255, 18, 0]


@pytest.mark.parametrize("chunk", [3, 1000])
def test_convert_splits_by_part_with_exact_values(tmp_path, chunk):
    parts = [write_part(tmp_path / f"part{k}.npz", n, k) for k, n in enumerate((7, 5, 6))]
    files = [str(tmp_path / f"part{k}.npz") for k in range(3)]
    assert cifar5m.convert(files[:2], tmp_path / "out", "train", chunk) == 12
    assert cifar5m.convert(files[2:], tmp_path / "out", "validation", chunk, 0, 2) == 2
    assert cifar5m.convert(files[2:], tmp_path / "out", "test", chunk, 2) == 4

    x_train = np.concatenate([parts[0]["X"], parts[1]["X"]])
    for split, x, y in (
        ("train", x_train, np.concatenate([parts[0]["Y"], parts[1]["Y"]])),
        ("validation", parts[2]["X"][:2], parts[2]["Y"][:2]),
        ("test", parts[2]["X"][2:], parts[2]["Y"][2:]),
    ):
        gray = read_memmap(tmp_path / "out" / f"{split}.bin")
        assert gray.shape == (len(x), 1024) and gray.dtype == np.uint8
        r, g, b = (x[..., c].astype(np.int64) for c in range(3))
        luma = (299 * r + 587 * g + 114 * b) / 1000
        assert np.array_equal(gray, np.floor(luma + 0.5).reshape(len(x), 1024))  # row-major pixels
        assert np.array_equal(read_memmap(tmp_path / "out" / f"{split}_rgb.bin"), x)
        assert np.array_equal(read_memmap(tmp_path / "out" / f"{split}_labels.bin"), y)
    meta = read_meta(tmp_path / "out" / "train.bin")
    assert meta["kind"] == "sequences" and meta["vocab_size"] == 256 and meta["tokens"] == 12 * 1024


@pytest.mark.parametrize(
    "override, message",
    [
        ({"X": np.zeros((4, 32, 32, 3), dtype=np.float32)}, "expected uint8"),
        ({"X": np.zeros((4, 32, 32), dtype=np.uint8)}, "expected uint8"),
        ({"Y": np.zeros(3, dtype=np.int64)}, "integer labels of shape"),
        ({"Z": np.zeros(1)}, None),
    ],
)
def test_bad_parts_are_rejected_without_output(tmp_path, override, message):
    if message is None:
        np.savez(tmp_path / "part0.npz", X=np.zeros((4, 32, 32, 3), np.uint8))
        message = "no array 'Y'"
    else:
        write_part(tmp_path / "part0.npz", 4, 0, **override)
    with pytest.raises(DataError, match=message):
        cifar5m.convert([str(tmp_path / "part0.npz")], tmp_path / "out", "train", 2)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_missing_part_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match="part9.npz.*storage.googleapis.com"):
        cifar5m.part_size(tmp_path / "part9.npz")


def test_truncated_memmap_is_reported(tmp_path):
    write_part(tmp_path / "part0.npz", 3, 0)
    cifar5m.convert([str(tmp_path / "part0.npz")], tmp_path, "train", 2)
    with open(tmp_path / "train.bin", "r+b") as f:
        f.truncate(100)
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_memmap(tmp_path / "train.bin")


def test_generators_are_deterministic_in_their_seed(tmp_path):
    synthetic_images.generate(tmp_path / "a.npz", 0, 40, seed=3, exponent=(1.0, 2.0), chunk=16)
    synthetic_images.generate(tmp_path / "b.npz", 0, 40, seed=3, exponent=(1.0, 2.0), chunk=16)
    synthetic_images.generate(tmp_path / "c.npz", 0, 40, seed=4, exponent=(1.0, 2.0), chunk=16)
    a, b, c = (np.load(tmp_path / f"{k}.npz") for k in "abc")
    assert np.array_equal(a["X"], b["X"]) and np.array_equal(a["Y"], b["Y"]) and not np.array_equal(a["X"], c["X"])
    assert cifar5m.part_size(tmp_path / "a.npz") == 40  # the real format: the converter reads it

    kw = dict(stories={"train": 30, "test": 5}, lexicon=50, topics=4, topic_words=10, zipf=1.1, sentences=(2, 5))
    out = lambda d: {"train": tmp_path / d / "train.parquet", "test": tmp_path / d / "test.parquet"}  # noqa: E731
    synthetic_text.generate(out("x"), seed=1, **kw)
    synthetic_text.generate(out("y"), seed=1, **kw)
    synthetic_text.generate(out("z"), seed=2, **kw)
    read = lambda d: (tmp_path / d / "train.parquet").read_bytes()  # noqa: E731
    assert read("x") == read("y") != read("z")


def test_synthetic_images_have_power_law_spectra():
    x, y = synthetic_images.images(np.random.default_rng(0), 200, (1.0, 2.0))
    assert set(np.unique(y)) == set(range(10))
    power = np.abs(np.fft.fft2(x.mean(-1) - x.mean())) ** 2
    k = np.fft.fftfreq(32)
    kk = np.sqrt(k[:, None] ** 2 + k[None, :] ** 2)
    low, high = power.mean(0)[(kk > 0.03) & (kk < 0.1)].mean(), power.mean(0)[kk > 0.3].mean()
    assert low > 30 * high

"""Data preparation: generated twins, SimpleStories and CIFAR-5M downloads, tokenizer, conversion."""

from __future__ import annotations

import argparse

from .common import command, log

INT = {"type": int}


def stories_generate(a: argparse.Namespace) -> None:
    from ..data import synthetic_text

    synthetic_text.generate(
        {"train": a.out_train, "test": a.out_test},
        {"train": a.train_stories, "test": a.test_stories},
        a.seed,
        a.lexicon,
        a.topics,
        a.topic_words,
        a.zipf,
        tuple(a.sentences),
    )


def stories_download(a: argparse.Namespace) -> None:
    from ..data import text

    log.info("downloading %s [%s]", a.hub_id, a.split)
    log.info("%d stories -> %s", text.download_split(a.hub_id, a.split, a.column, a.out), a.out)


def tokenizer_train(a: argparse.Namespace) -> None:
    from ..data import text

    batches = (b for p in a.stories for b in text.read_stories(p, a.column))
    tok = text.train_tokenizer(batches, a.vocab_size, a.out)
    log.info("tokenizer of %d tokens -> %s", tok.get_vocab_size(), a.out)


def stories_tokenize(a: argparse.Namespace) -> None:
    from ..data import text

    counts = text.prepare_splits(
        {"train": a.train, "test": a.test}, a.tokenizer, a.vocab_size, a.validation_stories, a.out_dir, a.column
    )
    log.info("tokens per split: %s", counts)


def images_generate(a: argparse.Namespace) -> None:
    from ..data import synthetic_images

    synthetic_images.generate(a.out, a.part, a.images_per_part, a.seed, tuple(a.exponent), background=a.background)


def cifar5m_download(a: argparse.Namespace) -> None:
    from ..data import cifar5m

    cifar5m.download(a.part, a.out)


def images_convert(a: argparse.Namespace) -> None:
    from ..data import cifar5m

    for split, parts, start, stop in (
        ("train", a.train, 0, None),
        ("validation", a.test, 0, a.validation_images),
        ("test", a.test, a.validation_images, None),
    ):
        log.info("%s: %d images", split, cifar5m.convert(parts, a.out_dir, split, a.chunk, start, stop))


def data_verify(a: argparse.Namespace) -> None:
    """Check the prepared files, then what the training runs ask of them (their settings come in
    the environment, not as params: an edit of steps reruns no data check), and record both."""
    import json
    import os
    from pathlib import Path

    from .. import config_checks
    from ..data.memmap import read_meta, verify_all
    from ..io import atomic_file

    checked = list(verify_all(dict(zip(a.files, a.files)), float("inf")).values())
    for result in checked:
        log.info("%s", result)
    where = Path(a.out).parent
    splits = {s: read_meta(where / f"{s}.bin") for s in ("train", "validation", "test")}
    needs = json.loads(os.environ.get(config_checks.NEEDS_ENV, "{}")).get(a.dataset, [])
    config_checks.raise_first(config_checks.prepared_problems(a.dataset, needs, splits, str(where)))
    record = {"settings": json.loads(a.settings), "splits": splits, "files": checked}
    with atomic_file(a.out) as tmp:
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")


def register(sub) -> None:
    """The data commands: text corpora, then images, then the check of prepared files."""
    _text(sub)
    _images(sub)
    command(
        sub,
        "data-verify",
        data_verify,
        "check prepared data files against their sidecars (size and sha256) and the runs' needs",
        files={"nargs": "+"},
        dataset={},
        settings={"help": "the data set's config section (JSON), recorded with the check"},
        out={},
    )


def _text(sub) -> None:
    command(
        sub,
        "stories-generate",
        stories_generate,
        "synthetic story corpus (parquet, SimpleStories columns)",
        out_train={},
        out_test={},
        train_stories=INT,
        test_stories=INT,
        seed=INT,
        lexicon=INT,
        topics=INT,
        topic_words=INT,
        zipf={"type": float},
        sentences={"type": int, "nargs": 2},
    )
    command(
        sub,
        "stories-download",
        stories_download,
        "one split of a Hugging Face story dataset to parquet",
        hub_id={},
        split={},
        column={},
        out={},
    )
    command(
        sub,
        "tokenizer-train",
        tokenizer_train,
        "train the SimpleStories tokenizer recipe",
        stories={"nargs": "+"},
        column={},
        vocab_size=INT,
        out={},
    )
    command(
        sub,
        "stories-tokenize",
        stories_tokenize,
        "clean and tokenize stories to uint16 streams",
        train={"nargs": "+"},
        test={"nargs": "+"},
        column={},
        tokenizer={},
        vocab_size=INT,
        validation_stories=INT,
        out_dir={},
    )


def _images(sub) -> None:
    command(
        sub,
        "images-generate",
        images_generate,
        "synthetic images as CIFAR-5M parts",
        out={},
        part=INT,
        images_per_part=INT,
        seed=INT,
        exponent={"type": float, "nargs": 2},
        background={"type": float, "default": 1.0, "help": "amplitude of the random-field background"},
    )
    command(sub, "cifar5m-download", cifar5m_download, "one published CIFAR-5M part", part=INT, out={})
    command(
        sub,
        "images-convert",
        images_convert,
        "CIFAR-5M parts to grayscale sequences, RGB and labels",
        train={"nargs": "+"},
        test={"nargs": "+"},
        validation_images=INT,
        chunk=INT,
        out_dir={},
    )

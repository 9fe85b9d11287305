"""SimpleStories-style text: cleaning, the published tokenizer recipe, and token streams.

Cleaning follows the SimpleStories training code: curly quotes, em dashes and ellipses to ASCII,
drop what is left outside ASCII, lowercase. The tokenizer recipe is the published 4096-token one:
WordPiece with ``[UNK]`` = 0 and ``[EOS]`` = 1; normalizers Lowercase, Replace("``" -> '"'),
Replace("''" -> '"'); pre-tokenizers Whitespace, Punctuation, Digits(individual_digits=True);
post-processor ``$A [EOS]``; WordPiece decoder with prefix ``##``.

A split becomes one flat ``uint16`` stream (:mod:`.memmap`): each story's ids followed by
``[EOS]``, stories in source order.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import WordPiece
from tokenizers.processors import TemplateProcessing
from tokenizers.trainers import WordPieceTrainer

from ..io import atomic_file
from .memmap import DataError, MemmapWriter, sha256_file

log = logging.getLogger(__name__)

UNK, EOS = "[UNK]", "[EOS]"
_ASCII = str.maketrans({"\u201d": '"', "\u201c": '"', "\u2019": "'", "\u2018": "'", "\u2014": "-", "\u2026": "..."})


def clean_story(text: str) -> str:
    """Curly quotes, em dash and ellipsis to ASCII; other non-ASCII dropped; lowercased."""
    return text.translate(_ASCII).encode("ascii", "ignore").decode("ascii").lower()


def read_stories(path: str | os.PathLike, column: str = "story", batch_rows: int = 10_000) -> Iterator[list[str]]:
    """Stories of a local ``.parquet`` or ``.jsonl`` file (the hub dataset's columns), in batches."""
    path = Path(path)
    if not path.exists():
        raise DataError(
            f"{path}: no such file. Point the config's data source at the SimpleStories "
            "parquet/jsonl files, or use source 'hub' on a machine with internet"
        )
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        if column not in pf.schema_arrow.names:
            raise DataError(f"{path}: no column {column!r} (columns: {pf.schema_arrow.names})")
        for batch in pf.iter_batches(batch_size=batch_rows, columns=[column]):
            yield batch.column(0).to_pylist()
    elif path.suffix in (".jsonl", ".json"):
        rows: list[str] = []
        with open(path) as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line)[column])
                except (json.JSONDecodeError, KeyError) as e:
                    raise DataError(f"{path}, line {n}: not a JSON object with key {column!r} ({e})") from e
                if len(rows) == batch_rows:
                    yield rows
                    rows = []
        if rows:
            yield rows
    else:
        raise DataError(f"{path}: unknown story file type {path.suffix!r}; use .parquet or .jsonl")


def download_split(hub_id: str, split: str, column: str, out: str | os.PathLike) -> int:
    """Save one split of a hub dataset as a local parquet file of its ``column``."""
    import datasets

    ds = datasets.load_dataset(hub_id, split=split)
    if column not in ds.column_names:
        raise DataError(f"{hub_id} [{split}]: no column {column!r} (columns: {ds.column_names})")
    with atomic_file(out) as tmp:
        ds.select_columns([column]).to_parquet(str(tmp))
    return len(ds)


def recipe(vocab_size: int) -> tuple[Tokenizer, WordPieceTrainer]:
    """An untrained tokenizer and its trainer, set up as the published SimpleStories tokenizer."""
    tok = Tokenizer(WordPiece(unk_token=UNK))
    tok.normalizer = normalizers.Sequence(
        [normalizers.Lowercase(), normalizers.Replace("``", '"'), normalizers.Replace("''", '"')]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation(), pre_tokenizers.Digits(individual_digits=True)]
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = WordPieceTrainer(vocab_size=vocab_size, special_tokens=[UNK, EOS])
    return tok, trainer


def train_tokenizer(batches: Iterable[list[str]], vocab_size: int, out: str | os.PathLike) -> Tokenizer:
    """Train the recipe on cleaned stories and save it as ``tokenizer.json`` (atomically)."""
    tok, trainer = recipe(vocab_size)
    tok.train_from_iterator((clean_story(s) for b in batches for s in b), trainer=trainer)
    # The trainer numbers its alphabet in hash order, which changes from run to run: renumber
    # (special tokens first, then by string). Merges whose counts tie are also broken in hash
    # order, so the vocabulary itself can differ between runs on the same corpus; every token
    # stream records the tokenizer's sha256, and a fixed tokenizer path reproduces exactly.
    vocab = tok.get_vocab()
    order = [UNK, EOS] + sorted(t for t in vocab if t not in (UNK, EOS))
    tok.model = WordPiece({t: i for i, t in enumerate(order)}, unk_token=UNK, continuing_subword_prefix="##")
    eos = tok.token_to_id(EOS)
    tok.post_processor = TemplateProcessing(single=f"$A {EOS}", special_tokens=[(EOS, eos)])
    with atomic_file(out) as tmp:
        tok.save(str(tmp))
    return tok


def load_tokenizer(path: str | os.PathLike, vocab_size: int) -> Tokenizer:
    """Load ``tokenizer.json``, checking that it fits ``uint16``, matches the config and ends stories in ``[EOS]``."""
    if not Path(path).exists():
        raise DataError(
            f"{path}: no tokenizer file. Set the config's tokenizer to the published "
            "simplestories-4096 tokenizer.json, or to null to train one with the recipe"
        )
    tok = Tokenizer.from_file(str(path))
    n = tok.get_vocab_size()
    if n > np.iinfo(np.uint16).max + 1:
        raise DataError(f"{path}: vocabulary of {n} tokens does not fit uint16 token streams")
    if n > vocab_size:
        raise DataError(
            f"{path}: vocabulary of {n} tokens, more than the config's vocab_size {vocab_size} (the model's "
            f"vocabulary): set vocab_size to {n} or use a tokenizer of at most {vocab_size} tokens"
        )
    if n < vocab_size:
        log.warning(
            "%s: vocabulary of %d tokens, fewer than vocab_size %d: the corpus is too small to learn more; the "
            "model keeps %d output classes, %d of which no token uses (vocab_size is a maximum)",
            path,
            n,
            vocab_size,
            vocab_size,
            vocab_size - n,
        )
    eos = tok.token_to_id(EOS)
    if eos is None or tok.encode("a").ids[-1] != eos:
        raise DataError(f"{path}: the tokenizer does not end each story with {EOS} (post-processor '$A {EOS}')")
    return tok


def tokenize(batches: Iterable[list[str]], tok: Tokenizer, out: str | os.PathLike, **meta) -> int:
    """Clean, encode and append each story with its ``[EOS]`` to a ``uint16`` stream; returns its length."""
    stories = 0
    with MemmapWriter(out, np.uint16, meta=meta) as w:
        for batch in batches:
            for enc in tok.encode_batch([clean_story(s) for s in batch]):
                w.write(np.asarray(enc.ids, dtype=np.int64))
            stories += len(batch)
            log.info("%s: %d stories, %d tokens", out, stories, w.rows)
        w.close(
            kind="stream", vocab_size=tok.get_vocab_size(), tokens=w.rows, stories=stories, eos_id=tok.token_to_id(EOS)
        )
        return w.rows


def prepare_splits(
    sources: dict[str, list[str]],
    tokenizer: str,
    vocab_size: int,
    validation_stories: int,
    out_dir: str | os.PathLike,
    column: str = "story",
) -> dict[str, int]:
    """Token streams ``train``, ``validation``, ``test`` under ``out_dir``.

    ``sources`` maps ``train`` and ``test`` to story files; validation is the last
    ``validation_stories`` stories of the training files, so it never overlaps training.
    """
    tok = load_tokenizer(tokenizer, vocab_size)
    hashes = {"tokenizer_sha256": sha256_file(tokenizer)}
    out_dir = Path(out_dir)
    total = sum(len(b) for p in sources["train"] for b in read_stories(p, column))
    if total <= validation_stories:
        raise DataError(f"{sources['train']}: {total} stories, not more than validation_stories={validation_stories}")
    cut = total - validation_stories
    train_sha = [sha256_file(p) for p in sources["train"]]
    counts = {}
    for split, lo, hi in (("train", 0, cut), ("validation", cut, total)):
        stories = _slice((b for p in sources["train"] for b in read_stories(p, column)), lo, hi)
        counts[split] = tokenize(
            stories, tok, out_dir / f"{split}.bin", source_sha256=train_sha, source_stories=[lo, hi], **hashes
        )
    counts["test"] = tokenize(
        (b for p in sources["test"] for b in read_stories(p, column)),
        tok,
        out_dir / "test.bin",
        source_sha256=[sha256_file(p) for p in sources["test"]],
        **hashes,
    )
    return counts


def _slice(batches: Iterable[list[str]], start: int, stop: int) -> Iterator[list[str]]:
    """Stories ``start:stop`` of a stream of batches."""
    seen = 0
    for b in batches:
        lo, hi = max(start - seen, 0), min(stop - seen, len(b))
        if lo < hi:
            yield b[lo:hi]
        seen += len(b)
        if seen >= stop:
            return

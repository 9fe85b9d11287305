"""SimpleStories preparation: cleaning, the published tokenizer, the recipe, uint16 streams, bad input."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tokenizers import Tokenizer
from tokenizers.models import WordPiece

from spectral_reach.data import DataError, read_memmap, read_meta, text

# The shared reference data beside the checkout (../shared/data), or where SPECTRAL_REACH_SHARED points.
PUBLISHED = (
    Path(os.environ.get("SPECTRAL_REACH_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    / "data"
    / "simplestories-4096.json"
)

STORIES = [
    "Once upon a time, Mia found a “magic” stone\u2014it glowed\u2026 She smiled.",
    "Tom’s dog ran to the park. It was 12 o'clock!",
    "The café was closed, so they went home. ``Good night,'' said Mom.",
    "A tiny bird sang. The end.",
    "Leo and Ava built a boat. It floated on the lake.",
]


def write_hub_parquet(path: Path, stories: list[str]) -> Path:
    """A parquet file with the hub dataset's columns (``story`` plus metadata columns)."""
    pd.DataFrame(
        {"story": stories, "topic": ["t"] * len(stories), "word_count": [len(s.split()) for s in stories]}
    ).to_parquet(path, index=False)
    return path


def test_clean_story_matches_the_simplestories_rules():
    assert text.clean_story("“Hi”\u2014‘you’\u2026 Café ÄB") == "\"hi\"-'you'... caf b"


@pytest.mark.skipif(not PUBLISHED.exists(), reason=f"published tokenizer not at {PUBLISHED}")
def test_published_tokenizer_stream_equals_tokenizers(tmp_path):
    train = write_hub_parquet(tmp_path / "train.parquet", STORIES)
    test = write_hub_parquet(tmp_path / "test.parquet", STORIES[:2])
    counts = text.prepare_splits(
        {"train": [str(train)], "test": [str(test)]}, str(PUBLISHED), 4096, 2, tmp_path / "out"
    )
    tok = Tokenizer.from_file(str(PUBLISHED))
    eos = tok.token_to_id("[EOS]")
    expected = [i for s in STORIES[:3] for i in tok.encode(text.clean_story(s)).ids]
    stream = read_memmap(tmp_path / "out" / "train.bin")
    assert stream.dtype == np.uint16
    assert stream.tolist() == expected  # uint16 round trip, exact
    assert counts["train"] == len(expected)
    assert np.count_nonzero(stream == eos) == 3 and stream[-1] == eos
    validation = read_memmap(tmp_path / "out" / "validation.bin").tolist()
    assert validation == [i for s in STORIES[3:] for i in tok.encode(text.clean_story(s)).ids]
    meta = read_meta(tmp_path / "out" / "train.bin")
    assert meta["vocab_size"] == 4096 and meta["tokens"] == len(expected) and meta["stories"] == 3
    assert meta["source_stories"] == [0, 3] and len(meta["tokenizer_sha256"]) == 64


@pytest.mark.skipif(not PUBLISHED.exists(), reason=f"published tokenizer not at {PUBLISHED}")
def test_recipe_reproduces_the_published_tokenizer_setup(tmp_path):
    train = write_hub_parquet(tmp_path / "train.parquet", STORIES * 20)
    tok = text.train_tokenizer(text.read_stories(train), 200, tmp_path / "tok.json")
    ours, published = json.loads((tmp_path / "tok.json").read_text()), json.loads(PUBLISHED.read_text())
    for key in ("normalizer", "pre_tokenizer", "post_processor", "decoder"):
        assert ours[key] == published[key], key
    assert ours["model"]["type"] == "WordPiece" and ours["model"]["continuing_subword_prefix"] == "##"
    assert tok.token_to_id("[UNK]") == 0 and tok.token_to_id("[EOS]") == 1
    for story in STORIES:
        clean = text.clean_story(story)
        enc = tok.encode(clean)
        assert enc.ids[-1] == 1 and 0 not in enc.ids
        normalized = clean.replace("``", '"').replace("''", '"')  # the recipe's normalizer
        assert "".join(tok.decode(enc.ids).split()) == "".join(normalized.split())


def test_trained_tokenizer_ids_are_canonical(tmp_path):
    """Special tokens first, then the vocabulary in string order: the trainer's own numbering
    follows hash order and changes from run to run."""
    tok = text.train_tokenizer([STORIES * 10], 150, tmp_path / "tok.json")
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    tokens = [t for t, _ in vocab]
    assert tokens[:2] == ["[UNK]", "[EOS]"] and tokens[2:] == sorted(tokens[2:])
    assert [i for _, i in vocab] == list(range(len(vocab)))


def test_jsonl_and_parquet_read_the_same(tmp_path):
    write_hub_parquet(tmp_path / "s.parquet", STORIES)
    (tmp_path / "s.jsonl").write_text("".join(json.dumps({"story": s, "topic": "t"}) + "\n" for s in STORIES))
    read = lambda p: [s for b in text.read_stories(p, batch_rows=2) for s in b]  # noqa: E731
    assert read(tmp_path / "s.parquet") == read(tmp_path / "s.jsonl") == STORIES


def test_bad_inputs_name_the_file_and_leave_nothing(tmp_path, caplog):
    with pytest.raises(DataError, match="missing.parquet.*SimpleStories"):
        next(text.read_stories(tmp_path / "missing.parquet"))
    pd.DataFrame({"text": STORIES}).to_parquet(tmp_path / "wrong.parquet")
    with pytest.raises(DataError, match="no column 'story'"):
        next(text.read_stories(tmp_path / "wrong.parquet"))
    (tmp_path / "bad.jsonl").write_text('{"story": "a"}\nnot json\n')
    with pytest.raises(DataError, match="bad.jsonl, line 2"):
        list(text.read_stories(tmp_path / "bad.jsonl"))

    tok_path = tmp_path / "tok.json"
    text.train_tokenizer([STORIES * 5], 120, tok_path)
    n = text.load_tokenizer(tok_path, 120).get_vocab_size()
    with pytest.raises(DataError, match=f"vocabulary of {n} tokens, more than the config's vocab_size {n - 1}"):
        text.load_tokenizer(tok_path, n - 1)
    with caplog.at_level(logging.WARNING):  # vocab_size is a maximum: a smaller vocabulary is said, and used
        assert text.load_tokenizer(tok_path, 4096).get_vocab_size() == n
    assert f"vocabulary of {n} tokens, fewer than vocab_size 4096" in caplog.text
    huge = Tokenizer(WordPiece({"[UNK]": 0, **{f"w{i}": i + 1 for i in range(70_000)}}, unk_token="[UNK]"))
    huge.save(str(tmp_path / "huge.json"))
    with pytest.raises(DataError, match="does not fit uint16"):
        text.load_tokenizer(tmp_path / "huge.json", 70_001)

    empty = write_hub_parquet(tmp_path / "empty.parquet", [])
    with pytest.raises(DataError, match="0 stories"):
        text.prepare_splits({"train": [str(empty)], "test": [str(empty)]}, str(tok_path), n, 1, tmp_path / "out")
    with pytest.raises(DataError, match="empty input"):
        text.tokenize(text.read_stories(empty), text.load_tokenizer(tok_path, n), tmp_path / "out" / "x.bin")
    assert not list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True

"""A synthetic story corpus for the embedded default: structure at several scales, seeded.

The world of a seed: a lexicon of pseudo-words built from syllables (names, nouns, verbs,
adjectives, places), each category Zipf-distributed; ``topics`` Zipf-popular topics, each with
its own Zipf ranking over a subset of the lexicon. A story draws one topic and two characters
(with pronouns) and strings sentences from a small grammar; characters recur, and the last
sentence returns to the story's first object. So a model can learn, in order of difficulty:
the grammar, word frequencies, topic-word associations, pronoun agreement and copying from
far back in the context. Stories are written like SimpleStories (capitals, curly quotes) and
saved as parquet with its ``story`` column, so they take the real preparation path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..io import atomic_file

_ONSETS = "b c d f g h j k l m n p r s t v w z br cl dr fl gr pl sk sl sn st tr ch sh th".split()
_VOWELS = "a e i o u ai ea ee oo ou".split()
_CODAS = ["", "", "", "n", "r", "l", "m", "s", "t", "nd", "st", "ck"]
_TEMPLATES = (
    "{A} {verb} the {adj} {noun} in the {place}.",
    "{A} and {B} {verb} the {noun}.",
    "The {noun} was very {adj}.",
    "“{Verb} the {noun}!” said {A}.",
    "Then {a} saw a {adj} {noun} near the {place}.",
    "{A} felt {adj} because the {noun} was {adj2}.",
    "{B} looked at {A}, and {b} {verb} the {noun} too.",
    "“Where is the {noun}?” asked {B}.",
)


@dataclass(frozen=True)
class World:
    names: list[str]
    pronouns: list[str]
    nouns: list[str]
    verbs: list[str]
    adjectives: list[str]
    places: list[str]
    name_cdf: np.ndarray
    topic_cdf: np.ndarray
    topics: list[dict[str, tuple[np.ndarray, np.ndarray]]]  # category -> (word indices, their Zipf CDF)


def _zipf(n: int, exponent: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** exponent
    return w / w.sum()


def _words(rng: np.random.Generator, count: int, taken: set[str]) -> list[str]:
    words = []
    while len(words) < count:
        w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(rng.integers(1, 4))) + rng.choice(_CODAS)
        if w not in taken:
            taken.add(w)
            words.append(w)
    return words


def make_world(seed: int, lexicon: int, topics: int, topic_words: int, zipf: float) -> World:
    """The lexicon (``lexicon`` words per category) and topic tables of one seed."""
    rng = np.random.default_rng(seed)
    taken: set[str] = set()
    cats = {c: _words(rng, lexicon, taken) for c in ("names", "nouns", "verbs", "adjectives", "places")}
    cats["verbs"] = [v + "ed" for v in cats["verbs"]]
    tables = []
    for _ in range(topics):
        table = {}
        for c in ("nouns", "verbs", "adjectives", "places"):
            idx = rng.choice(lexicon, size=min(topic_words, lexicon), replace=False)
            table[c] = (idx, np.cumsum(_zipf(len(idx), zipf)))
        tables.append(table)
    return World(
        names=cats["names"],
        pronouns=list(rng.choice(["he", "she"], size=lexicon)),
        nouns=cats["nouns"],
        verbs=cats["verbs"],
        adjectives=cats["adjectives"],
        places=cats["places"],
        name_cdf=np.cumsum(_zipf(lexicon, zipf)),
        topic_cdf=np.cumsum(_zipf(topics, zipf)),
        topics=tables,
    )


def _sample(rng: np.random.Generator, cdf: np.ndarray) -> int:
    return min(int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right")), len(cdf) - 1)


def story(world: World, rng: np.random.Generator, sentences: tuple[int, int]) -> str:
    """One story: a topic, two recurring characters, grammar sentences, a callback to the first object."""
    topic = world.topics[_sample(rng, world.topic_cdf)]

    def draw(cat: str) -> str:
        idx, cdf = topic[cat]
        return getattr(world, cat)[idx[_sample(rng, cdf)]]

    a = b = _sample(rng, world.name_cdf)
    while b == a:
        b = _sample(rng, world.name_cdf)
    first = draw("nouns")
    lines = [f"Once upon a time, there was {world.names[a].title()}, who had a {draw('adjectives')} {first}."]
    for _ in range(rng.integers(*sentences)):
        t = _TEMPLATES[rng.integers(len(_TEMPLATES))]
        verb = draw("verbs")
        s = t.format(
            A=world.names[a].title(),
            B=world.names[b].title(),
            a=world.pronouns[a],
            b=world.pronouns[b],
            verb=verb,
            Verb=verb.title(),
            noun=draw("nouns"),
            adj=draw("adjectives"),
            adj2=draw("adjectives"),
            place=draw("places"),
        )
        lines.append(s[0].upper() + s[1:])
    lines.append(f"In the end, {world.names[a].title()} {draw('verbs')} the {first} again.")
    return " ".join(lines)


def generate(
    out: dict[str, str | os.PathLike],
    stories: dict[str, int],
    seed: int,
    lexicon: int,
    topics: int,
    topic_words: int,
    zipf: float,
    sentences: tuple[int, int],
) -> None:
    """Write ``stories[split]`` stories of one world to the parquet file ``out[split]``.

    Each split has its own random stream (``seed``, split index), so growing one split leaves
    the others unchanged."""
    world = make_world(seed, lexicon, topics, topic_words, zipf)
    for i, split in enumerate(sorted(out)):
        rng = np.random.default_rng([seed, i + 1])
        df = pd.DataFrame({"story": [story(world, rng, sentences) for _ in range(stories[split])]})
        with atomic_file(out[split]) as tmp:
            df.to_parquet(tmp, index=False)

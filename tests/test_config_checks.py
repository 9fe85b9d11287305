"""Cross-key config mistakes (issue 38) are named with their key, value and fix, before any job:
each mistake the issue found on a finished demo tree, on the embedded default with the schema's
defaults filled in; the shipped configs have none."""

from __future__ import annotations

import copy
import json
import os

import pytest
import yaml
from snakemake.utils import validate
from workflow_run import ROOT, merged

from spectral_reach.config_checks import check, data_needs, prepared_problems, prepared_splits, problems

SCHEMA = str(ROOT / "workflow/schemas/config.schema.yaml")


def load(*names: str) -> dict:
    config = {}
    for name in names:
        over = yaml.safe_load((ROOT / name).read_text())
        config = merged(config, over)
    validate(config, SCHEMA)  # fills in the schema's defaults, as the workflow does
    return config


@pytest.mark.parametrize(
    "names",
    [("config/config.yaml",), ("config/paper.yaml",), ("config/rehearsal.yaml",), ("tests/configs/ci.yaml",),
     ("config/config.yaml", "config/showcase.yaml")],
)  # fmt: skip
def test_the_shipped_configs_have_no_problem(names):
    assert problems(load(*names)) == []


DEMO = load("config/config.yaml")


def with_(path: str, value) -> dict:
    config = copy.deepcopy(DEMO)
    *head, last = path.split(".")
    node = config
    for key in head:
        node = node[key]
    node[last] = value
    return config


@pytest.mark.parametrize(
    "path, value, words",
    [
        # issue 38's mistakes
        ("lm.synthstories.sizes.s.hidden", 30, ["lm.synthstories.sizes.s.heads: 2 heads of hidden=30", "odd head dimension 15"]),
        ("lm.synthcifar.sizes.m.head_dim", 20, ["lm.synthcifar.sizes.m.heads: 2 heads of head_dim 20 need a width of 40"]),
        ("lm.synthcifar.lnp.measure_contexts", 100000, ["lm.synthcifar.lnp.measure_contexts: 100000 exceeds the 1024 validation images"]),
        ("lm.synthcifar.context_length", 4096, ["lm.synthcifar.context_length: 4096 exceeds the 1024 pixels"]),
        ("lm.synthcifar.steps", 2000, ["lm.synthcifar.steps: 2000 exceeds one pass over the 6000 training images", "(1500 steps)"]),
        ("vit.standard.sizes.w32.patch", 7, ["vit.standard.sizes.w32.patch: 7 does not divide the 32-pixel image side", "last 4 rows"]),
        # and the others the config alone can tell
        ("vit.steps", 10000, ["vit.steps=10000 exceeds vit.passes=10 passes of 1 x 6000", "lower vit.steps or raise vit.passes"]),
        ("vit.mup.sizes.w48.heads", 5, ["vit.mup.sizes.w48.heads: 5 does not divide vit.mup.sizes.w48.hidden=48"]),
        ("lm.synthstories.lnp.measure_batch", 65, ["lm.synthstories.lnp.measure_batch: 65 exceeds lm.synthstories.lnp.measure_contexts=64"]),
        ("vit.eval.test_images", 6000, ["vit.eval.test_images: 6000 exceeds the 4976 test images of synthshapes"]),
        ("data.synthshapes.validation_images", 6000, ["data.synthshapes.validation_images: 6000 leaves no test images"]),
        ("lm.synthstories.lnp.width", 601, ["lm.synthstories.lnp.width: 601 steps per measurement window exceed"]),
        ("vit.checkpoint_every", 1000, ["vit.checkpoint_every: 1000 exceeds vit.steps=920"]),
        ("checks.hutchinson.seed", 7, ["checks.hutchinson.seed: 7 is not one of lm.synthstories.seeds [0, 1]"]),
        ("checks.entk.dataset", "nope", ["checks.entk.dataset: 'nope' is not one of datasets"]),
        ("probe.seeds", [0, 3], ["probe.seeds: [3] are not seeds of lm.synthstories.seeds [0, 1]"]),
    ],
)  # fmt: skip
def test_each_mistake_is_named_with_its_key_and_fix(path, value, words):
    with pytest.raises(ValueError) as err:
        check(with_(path, value))
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_every_problem_is_counted_and_the_first_named():
    config = with_("vit.standard.sizes.w32.patch", 7)
    config["lm"]["synthcifar"]["context_length"] = 4096
    assert len(problems(config)) == 2
    with pytest.raises(ValueError, match=r"(?s)lm.synthcifar.context_length.*\(1 more problem"):
        check(config)


def test_an_explicit_even_head_dim_allows_heads_that_do_not_divide_the_width():
    """The paper's 3.8M row: hidden 196, 3 heads, head_dim 64 (models/llama.py)."""
    config = with_(
        "lm.synthstories.sizes.s", {"layers": 2, "hidden": 196, "ff": 48, "heads": 3, "head_dim": 64, "lr": 1e-2}
    )
    assert problems(config) == []
    config["lm"]["synthstories"]["sizes"]["s"].pop("head_dim")  # 196 // 3 = 65: odd
    assert "odd head dimension 65" in problems(config)[0]


def stream(tokens: int) -> dict:
    return {"kind": "stream", "shape": [tokens], "vocab_size": 1024}


def test_the_prepared_corpus_bounds_steps_and_sets():
    """Stories: contexts are tokens // context_length (as data.Contexts counts them); one pass is
    contexts // batch_size steps."""
    needs = data_needs(DEMO)["synthstories"]
    assert needs == [
        {"key": "lm.synthstories", "context_length": 64, "batch_size": 16, "steps": 600, "passes": 1,
         "measure": ["lnp.measure_contexts", 64], "test": ["eval.test_contexts", 256]},
    ]  # fmt: skip
    fits = {"train": stream(64 * 16 * 600), "validation": stream(64 * 64), "test": stream(64 * 256 + 63)}
    assert prepared_problems("synthstories", needs, fits, "d") == []
    short = {"train": stream(64 * 16 * 600 - 1), "validation": stream(64 * 64 - 1), "test": stream(64 * 256 - 1)}
    assert prepared_problems("synthstories", needs, short, "d") == [
        "config key lm.synthstories.steps: 600 exceeds 1 pass(es) over the prepared data of synthstories (d/train.bin: "
        "9599 contexts of 64 tokens, 599 steps per pass at lm.synthstories.batch_size=16); lower steps to at most 599, "
        "or give synthstories more training data",
        "config key lm.synthstories.lnp.measure_contexts: 64 exceeds the 63 contexts of 64 tokens of d/validation.bin; "
        "set it to at most 63, or hold out more data for validation in data.synthstories",
        "config key lm.synthstories.eval.test_contexts: 256 exceeds the 255 contexts of 64 tokens of d/test.bin; set "
        "it to at most 255, or hold out more data for test in data.synthstories",
    ]


def test_the_prepared_images_bound_the_vits_passes():
    needs = data_needs(DEMO)["synthshapes"]
    assert [n["key"] for n in needs] == ["vit"] and needs[0]["context_length"] is None
    images = lambda n: {"kind": "sequences", "shape": [n, 1024]}  # noqa: E731
    vit = DEMO["vit"]
    per_pass = -(-vit["steps"] // vit["passes"])  # the fewest steps per pass that hold the run
    train = images(per_pass * vit["batch_size"])
    held = {"validation": images(vit["lnp"]["measure_images"]), "test": images(vit["eval"]["test_images"])}
    assert prepared_problems("synthshapes", needs, {"train": train, **held}, "d") == []
    fewer = images((per_pass - 1) * vit["batch_size"])
    assert "config key vit.steps" in prepared_problems("synthshapes", needs, {"train": fewer, **held}, "d")[0]


def test_only_a_current_record_of_the_data_is_judged(tmp_path):
    """The data check's record counts where it was made under the config's data settings and
    after every local source; otherwise the data is prepared anew and judged by its check."""
    settings = {"kind": "text", "vocab_size": 1024, "source": {"files": {"train": ["a.jsonl"]}}}
    splits = {"train": stream(10)}
    source = tmp_path / "a.jsonl"
    source.write_text("{}\n")
    record = tmp_path / "verified.json"
    record.write_text(json.dumps({"settings": settings, "splits": splits, "files": []}))
    os.utime(source, (1, 1))
    assert prepared_splits(record, settings, [str(source), str(tmp_path / "not made yet")]) == splits
    assert prepared_splits(record, {**settings, "vocab_size": 512}, [str(source)]) is None
    os.utime(source, (record.stat().st_mtime + 10,) * 2)  # the corpus changed since: prepared anew
    assert prepared_splits(record, settings, [str(source)]) is None
    record.write_text("[]")  # a record from before this check: no judgement at parse time
    assert prepared_splits(record, settings, []) is None
    assert prepared_splits(tmp_path / "missing.json", settings, []) is None

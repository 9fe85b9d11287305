"""Shared fixtures: a tiny prepared text data set, made by the package's own preparation path; the
CI-scale workflow run once for the workflow and SLURM tests."""

from __future__ import annotations

import pytest

from spectral_reach.data import synthetic_text, text


@pytest.fixture(scope="session")
def text_data(tmp_path_factory):
    """``results/data/<name>/``-style folder: train/validation/test uint16 streams, vocab 96."""
    root = tmp_path_factory.mktemp("data")
    raw = {"train": root / "raw" / "train.parquet", "test": root / "raw" / "test.parquet"}
    synthetic_text.generate(
        raw, {"train": 400, "test": 60}, seed=0, lexicon=40, topics=4, topic_words=12, zipf=1.1, sentences=(2, 5)
    )
    text.train_tokenizer(text.read_stories(raw["train"]), 96, root / "tokenizer.json")
    text.prepare_splits(
        {"train": [str(raw["train"])], "test": [str(raw["test"])]},
        str(root / "tokenizer.json"),
        96,
        60,
        root / "prepared",
    )
    return root / "prepared"


@pytest.fixture(scope="session")
def image_data(tmp_path_factory):
    """``results/data/<name>/``-style folder of converted synthetic CIFAR-5M parts (RGB + labels)."""
    from spectral_reach.data import cifar5m, synthetic_images

    root = tmp_path_factory.mktemp("images")
    parts = [str(root / f"part{k}.npz") for k in range(2)]
    for k, path in enumerate(parts):
        synthetic_images.generate(path, k, 600, seed=0, exponent=(1.0, 2.0))
    cifar5m.convert(parts[:1], root / "prepared", "train", 300)
    cifar5m.convert(parts[1:], root / "prepared", "validation", 300, 0, 200)
    cifar5m.convert(parts[1:], root / "prepared", "test", 300, 200)
    return root / "prepared"


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    """The whole DAG of ``tests/configs/ci.yaml`` run from nothing in a copy of the workflow: through
    ``profiles/slurm`` on the local SLURM where ``SPECTRAL_REACH_SLURM`` is set, on this machine
    elsewhere. Snakemake's output is kept in ``run.log``. Tests change only copies of it
    (:func:`workflow_run.copy_run`) or restore what they change."""
    from workflow_run import CI_CONFIG_PATH, SLURM, SLURM_ARGS, copy_workflow, snakemake

    work = copy_workflow(tmp_path_factory.mktemp("workflow"))
    proc = snakemake(
        work, *(SLURM_ARGS if SLURM else []), "--configfile", str(CI_CONFIG_PATH), "--replace-workflow-config"
    )
    (work / "run.log").write_text(proc.stdout + proc.stderr)
    return work

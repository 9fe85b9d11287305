"""What a config alone can tell is wrong across its keys, found before any job starts.

The schema checks each key by itself; these check keys against each other and against what the
data the config makes will hold, so that a mistake fails when Snakemake builds its DAG, before any
job deletes a finished run's outputs to redo it. Each error names the key, its value and the fix.
:func:`problems` lists every problem (the workflow reports the first); it reads a config whose
schema defaults are filled in. Imports nothing heavy: the workflow calls it while it parses.

Checked: a Llama's heads give an even head dimension (its rotary embedding) within the width,
a ViT's heads divide its width, a ViT's patch divides the image side, an image language model's context fits in an
image's pixels, measurement batches fit their measurement sets, measurement and test sets fit the
validation and test images a generated image set will hold, steps fit one pass of the training
images where the config fixes their number (a ViT's steps its passes), measurement windows and checkpoints fit in the run,
and the checks, probes and figures name data sets, sizes and seeds that exist.

What only the prepared data can tell (how many contexts a text corpus gives) is checked against
the data's record (``verified.json``, written by the data check) when Snakemake starts, where that
record is current (:func:`prepared_splits`); where the data is about to be prepared anew, the data
check itself refuses it (:func:`prepared_problems`, with :func:`data_needs` passed in the
environment), before any training job that reads it starts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

from .errors import ConfigError

#: CIFAR-5M and its generated twins: 32 x 32 images, one grayscale token per pixel.
IMAGE_SIDE = 32
IMAGE_PIXELS = IMAGE_SIDE * IMAGE_SIDE

Config = dict[str, Any]


#: Which size a check reads where its config names none: Hutchinson the largest, the explicit
#: eNTK (one backward pass per output) a middle one.
CHECK_SIZES = {"hutchinson": lambda sizes: sizes[-1], "entk": lambda sizes: sizes[len(sizes) // 2]}


def resolve_check_runs(config: Config) -> None:
    """Fill in the run each check reads (``checks.<name>``: ``dataset``, ``size``, ``seed``) where
    the config leaves it out: the first data set of ``datasets``, :data:`CHECK_SIZES`' size of it
    (in the config's order) and its first seed, so that an overlay with data sets of its own needs
    no edit of ``checks``."""
    for name, choose in CHECK_SIZES.items():
        c = config["checks"][name]
        if "dataset" not in c and config["datasets"]:
            c["dataset"] = config["datasets"][0]
        run = config["lm"].get(c.get("dataset"))
        if run:
            c.setdefault("size", choose(list(run["sizes"])))
            c.setdefault("seed", run["seeds"][0])


def problems(config: Config) -> list[str]:
    """Every cross-key problem of ``config``, in the order the config reads."""
    config = {**config, "checks": {k: dict(v) for k, v in config["checks"].items()}}
    resolve_check_runs(config)
    return [*_language_models(config), *_vits(config), *_references(config)]


def check(config: Config) -> None:
    """Raise a ConfigError naming the first problem (and how many more there are)."""
    raise_first(problems(config))


def raise_first(found: list[str]) -> None:
    """Raise a ConfigError naming the first of ``found`` and how many more there are; nothing if none."""
    if found:
        more = f"\n  ({len(found) - 1} more problem(s) after this one)" if len(found) > 1 else ""
        raise ConfigError(found[0] + more)


def _llama_heads(key: str, size: dict) -> Iterator[str]:
    """The Llama's heads: ``head_dim`` (``hidden // heads`` unless a size sets it; the paper's
    tables have widths their head count does not divide, models/llama.py) must be even for the
    rotary embedding, and ``heads x head_dim`` within ``hidden``."""
    hidden, heads = size["hidden"], size["heads"]
    head_dim = size.get("head_dim", hidden // heads)
    if heads * head_dim > hidden or head_dim == 0:
        yield (
            f"config key {key}.heads: {heads} heads of head_dim {head_dim} need a width of {heads * head_dim}, "
            f"more than {key}.hidden={hidden}; lower heads or head_dim"
        )
    elif head_dim % 2:
        even = [h for h in range(1, hidden + 1) if (hidden // h) % 2 == 0][:8]
        yield (
            f"config key {key}.heads: {heads} heads of hidden={hidden} give an odd head dimension {head_dim} "
            f"({'head_dim' if 'head_dim' in size else 'hidden // heads'}), which Llama's rotary position embedding "
            f"cannot rotate in pairs; use heads with an even hidden // heads (one of {even}) or set "
            f"{key}.head_dim to an even number"
        )


def _vit_heads(key: str, size: dict) -> Iterator[str]:
    hidden, heads = size["hidden"], size["heads"]
    if hidden % heads:
        divisors = [h for h in range(1, hidden + 1) if hidden % h == 0][:8]
        yield (
            f"config key {key}.heads: {heads} does not divide {key}.hidden={hidden}, which the ViT's attention "
            f"splits into equal heads; set heads to one of {divisors}"
        )


def _generated_images(data: Config) -> tuple[int, int] | None:
    """``(training images, images of the test parts)`` of a generated image set, else ``None``
    (a downloaded or local CIFAR-5M: its size is known only once it is read)."""
    generate = data.get("source", {}).get("generate")
    if data.get("kind") != "image" or not generate:
        return None
    per_part = generate["images_per_part"]
    return len(data["train_parts"]) * per_part, len(data["test_parts"]) * per_part


def _within_run(key: str, run: Config) -> Iterator[str]:
    steps = run["steps"]
    if run["lnp"]["width"] > steps:
        yield (
            f"config key {key}.lnp.width: {run['lnp']['width']} steps per measurement window exceed the run's "
            f"{key}.steps={steps}; set width to at most {steps}"
        )
    if run["checkpoint_every"] > steps:
        yield (
            f"config key {key}.checkpoint_every: {run['checkpoint_every']} exceeds {key}.steps={steps}, so the run "
            f"would never checkpoint before its end (a preempted run would start over); set it to at most {steps}"
        )


def _image_sets(key: str, data_key: str, data: Config, run: Config, measure: str, test: str) -> Iterator[str]:
    """The measurement and test sets of a run on a generated image set against what it will hold."""
    sizes = _generated_images(data)
    if sizes is None:
        return
    train, held_out = sizes
    validation = data["validation_images"]
    if validation >= held_out:
        yield (
            f"config key data.{data_key}.validation_images: {validation} leaves no test images: the test parts "
            f"{data['test_parts']} hold {held_out} images; set it below {held_out}"
        )
        return
    measure_n, test_n = run["lnp"][measure], run["eval"][test]
    if measure_n > validation:
        yield (
            f"config key {key}.lnp.{measure}: {measure_n} exceeds the {validation} validation images of "
            f"{data_key} (data.{data_key}.validation_images); set it to at most {validation} or raise validation_images"
        )
    if test_n > held_out - validation:
        yield (
            f"config key {key}.eval.{test}: {test_n} exceeds the {held_out - validation} test images of {data_key} "
            f"(the test parts' {held_out} less data.{data_key}.validation_images={validation}); set it to at most "
            f"{held_out - validation}"
        )


def _variants(key: str, run: dict) -> Iterator[str]:
    """Each intervention variant names what its optimizer and schedule need (a wsd schedule, of the
    data set's own runs or a variant's, its decay share)."""
    if run.get("schedule") == "wsd" and "decay_fraction" not in run:
        yield f"config key {key}.decay_fraction is missing: schedule wsd decays over that share of the steps; set it (0.2 is common)"
    for name, v in (run.get("variants") or {}).items():
        where = f"{key}.variants.{name}"
        if v.get("optimizer") in ("sgd", "muon") and "momentum" not in v:
            yield f"config key {where}.momentum is missing: optimizer {v['optimizer']} needs it; set it (sgd 0.9, muon 0.95 are common)"
        if v.get("schedule") == "wsd" and "decay_fraction" not in v and "decay_fraction" not in run:
            yield f"config key {where}.decay_fraction is missing: schedule wsd decays over that share of the steps; set it (0.2 is common)"
        yield from _mup_variant(where, run, v)


def _mup_variant(where: str, run: dict, v: dict) -> Iterator[str]:
    """A muP variant has its settings, an optimizer with a muP rule and sizes it can build (even head
    sizes at its base widths); muP settings without ``init: mup`` are a mistake, not a no-op."""
    if (v.get("init") == "mup") != ("mup" in v):
        yield (
            f"config key {where}: init mup and {where}.mup go together; set both "
            "(mup: {base_width: <the smallest size's hidden>}) or neither"
        )
        return
    if v.get("init") != "mup":
        return
    if v.get("optimizer") == "muon":
        yield f"config key {where}.optimizer: muon has no muP rule here; use adamw or sgd with init mup (mup.MuAdamW, mup.MuSGD)"
    from .models.mup_widths import check_size

    for name, size in run["sizes"].items():
        try:
            check_size(size, v["mup"]["base_width"])
        except ConfigError as e:
            yield f"config key {where}: size {name}: {e}"


def _language_models(config: Config) -> Iterator[str]:
    for d in config["datasets"]:
        run, data, key = config["lm"][d], config["data"][d], f"lm.{d}"
        for name, size in run["sizes"].items():
            yield from _llama_heads(f"{key}.sizes.{name}", size)
        lnp = run["lnp"]
        if lnp["measure_batch"] > lnp["measure_contexts"]:
            yield (
                f"config key {key}.lnp.measure_batch: {lnp['measure_batch']} exceeds {key}.lnp.measure_contexts="
                f"{lnp['measure_contexts']}, the set B' is drawn from; set it to at most {lnp['measure_contexts']}"
            )
        yield from _within_run(key, run)
        yield from _variants(key, run)
        if data["kind"] != "image":
            continue
        if run["context_length"] > IMAGE_PIXELS:
            yield (
                f"config key {key}.context_length: {run['context_length']} exceeds the {IMAGE_PIXELS} pixels of a "
                f"{IMAGE_SIDE} x {IMAGE_SIDE} image (one token each); set it to at most {IMAGE_PIXELS}"
            )
        sizes = _generated_images(data)
        if sizes and run["steps"] > sizes[0] // run["batch_size"]:
            yield (
                f"config key {key}.steps: {run['steps']} exceeds one pass over the {sizes[0]} training images of {d} "
                f"at {key}.batch_size={run['batch_size']} ({sizes[0] // run['batch_size']} steps); lower steps, or "
                f"generate more images (data.{d}.source.generate.images_per_part, train_parts)"
            )
        yield from _image_sets(key, d, data, run, "measure_contexts", "test_contexts")


def _vits(config: Config) -> Iterator[str]:
    vit = config.get("vit")
    if not vit:
        return
    for par in ("standard", "mup"):
        for name, size in vit[par]["sizes"].items():
            key = f"vit.{par}.sizes.{name}"
            yield from _vit_heads(key, size)
            if IMAGE_SIDE % size["patch"]:
                divisors = [p for p in range(1, IMAGE_SIDE + 1) if IMAGE_SIDE % p == 0]
                yield (
                    f"config key {key}.patch: {size['patch']} does not divide the {IMAGE_SIDE}-pixel image side, so "
                    f"the last {IMAGE_SIDE % size['patch']} rows and columns of every image would be dropped; use one "
                    f"of {divisors}"
                )
    data = config["data"][vit["dataset"]]
    sizes = _generated_images(data)
    if sizes and vit["steps"] > vit["passes"] * (sizes[0] // vit["batch_size"]):
        generated = data["source"]["generate"]
        yield (
            f"vit.steps={vit['steps']} exceeds vit.passes={vit['passes']} passes of "
            f"{len(data['train_parts'])} x {generated['images_per_part']} generated images at "
            f"vit.batch_size={vit['batch_size']} ({vit['passes'] * (sizes[0] // vit['batch_size'])} steps): "
            "lower vit.steps or raise vit.passes"
        )
    lnp = vit["lnp"]
    if lnp["measure_batch"] > lnp["measure_images"]:
        yield (
            f"config key vit.lnp.measure_batch: {lnp['measure_batch']} exceeds vit.lnp.measure_images="
            f"{lnp['measure_images']}, the set B' is drawn from; set it to at most {lnp['measure_images']}"
        )
    yield from _within_run("vit", vit)
    yield from _image_sets("vit", vit["dataset"], data, vit, "measure_images", "test_images")


def _references(config: Config) -> Iterator[str]:
    datasets, lm = config["datasets"], config["lm"]
    for check in ("hutchinson", "entk"):
        c, key = config["checks"][check], f"checks.{check}"
        if c["dataset"] not in datasets:
            yield f"config key {key}.dataset: {c['dataset']!r} is not one of datasets {datasets}; name one of them"
            continue
        run = lm[c["dataset"]]
        if c["size"] not in run["sizes"]:
            yield (
                f"config key {key}.size: {c['size']!r} is not a size of lm.{c['dataset']} "
                f"({', '.join(run['sizes'])}); name one of them"
            )
        if c["seed"] not in run["seeds"]:
            yield f"config key {key}.seed: {c['seed']} is not one of lm.{c['dataset']}.seeds {run['seeds']}"
    for d in datasets:
        missing = [s for s in config["probe"]["seeds"] if s not in lm[d]["seeds"]]
        if missing:
            yield (
                f"config key probe.seeds: {missing} are not seeds of lm.{d}.seeds {lm[d]['seeds']}: a probe needs "
                "the trained model of its seed; probe only seeds that are trained"
            )


#: The environment variable that carries :func:`data_needs` from the workflow to the data check.
NEEDS_ENV = "SPECTRAL_REACH_DATA_NEEDS"


def data_needs(config: Config) -> dict[str, list[dict]]:
    """What the training runs ask of each prepared data set: per data set, one entry per kind of
    run reading it (the language models of ``lm.<d>``, the ViTs), with the config keys it comes from."""
    needs: dict[str, list[dict]] = {d: [] for d in config["datasets"]}
    for d in config["datasets"]:
        run = config["lm"][d]
        needs[d].append(
            {
                "key": f"lm.{d}",
                "context_length": run["context_length"],
                "batch_size": run["batch_size"],
                "steps": run["steps"],
                "passes": 1,
                "measure": ["lnp.measure_contexts", run["lnp"]["measure_contexts"]],
                "test": ["eval.test_contexts", run["eval"]["test_contexts"]],
            }
        )
    vit = config.get("vit")
    if vit:
        needs.setdefault(vit["dataset"], []).append(
            {
                "key": "vit",
                "context_length": None,  # whole images
                "batch_size": vit["batch_size"],
                "steps": vit["steps"],
                "passes": vit["passes"],
                "measure": ["lnp.measure_images", vit["lnp"]["measure_images"]],
                "test": ["eval.test_images", vit["eval"]["test_images"]],
            }
        )
    return needs


def split_count(meta: dict, context_length: int | None) -> int:
    """How many contexts of ``context_length`` tokens (``None``: whole sequences) a prepared split
    holds, as :class:`spectral_reach.data.Contexts` counts them."""
    rows = meta["shape"][0]
    if meta["kind"] == "stream":
        return rows // context_length
    return rows if context_length is None or context_length <= meta["shape"][1] else 0


def prepared_problems(dataset: str, needs: list[dict], splits: dict[str, dict], where: str) -> list[str]:
    """The training runs' needs of ``dataset`` against its prepared splits (``{split: sidecar}``)."""
    found = []
    for need in needs:
        key, n = need["key"], need["context_length"]
        what = "images" if n is None else f"contexts of {n} tokens"
        train = split_count(splits["train"], n)
        per_pass = train // need["batch_size"]
        if need["steps"] > need["passes"] * per_pass:
            found.append(
                f"config key {key}.steps: {need['steps']} exceeds {need['passes']} pass(es) over the prepared data of "
                f"{dataset} ({where}/train.bin: {train} {what}, {per_pass} steps per pass at {key}.batch_size="
                f"{need['batch_size']}); lower steps to at most {need['passes'] * per_pass}, or give {dataset} more training data"
            )
        for split, (name, value) in (("validation", need["measure"]), ("test", need["test"])):
            have = split_count(splits[split], n)
            if value > have:
                found.append(
                    f"config key {key}.{name}: {value} exceeds the {have} {what} of {where}/{split}.bin; set it to "
                    f"at most {have}, or hold out more data for {split} in data.{dataset}"
                )
    return found


def prepared_splits(verified: str | os.PathLike, settings: dict, sources: list[str]) -> dict[str, dict] | None:
    """The split sidecars a data check recorded in ``verified``, if that record is current: made
    under the config's ``settings`` of the data set, and newer than each of its ``sources`` (local
    files a changed version of which Snakemake prepares again). ``None`` when it is not: the data
    will be prepared anew, and its data check judges it then."""
    path = Path(verified)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("settings") != json.loads(json.dumps(settings)):
        return None
    made = path.stat().st_mtime
    if any(os.path.exists(s) and os.path.getmtime(s) > made for s in sources):
        return None
    return record.get("splits")

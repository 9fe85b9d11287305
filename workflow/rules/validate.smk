# The config against workflow/schemas/config.schema.yaml, before any job: numbers written as YAML
# 1.1 reads them (`3e-4`, `1e6`: strings to PyYAML, as to Snakemake) become numbers where the
# schema wants a number and no string, then a violation is named by its key path on the first line,
# the schema's detail after it; Snakemake's validate then fills in the schema's defaults.
import re

import jsonschema
import yaml
from snakemake.utils import validate

SCHEMA = os.path.join(workflow.basedir, "workflow/schemas/config.schema.yaml")
NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _branches(schema, root):
    """``schema`` with its ``$ref`` resolved, and every subschema that may also apply to the same value."""
    while "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        schema = {**root["$defs"][name], **{k: v for k, v in schema.items() if k != "$ref"}}
    yield schema
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key, []):
            yield from _branches(sub, root)
    for key in ("then", "else"):
        if key in schema:
            yield from _branches(schema[key], root)


def _children(schemas, key, root):
    """The schemas that apply to ``key`` of an object (or to its items when ``key`` is None)."""
    out = []
    for s in (b for schema in schemas for b in _branches(schema, root)):
        if key is None:
            child = s.get("items")
        else:
            child = s.get("properties", {}).get(key, s.get("additionalProperties"))
        if isinstance(child, dict):
            out.append(child)
    return out


def coerce_numbers(value, schemas, root):
    """``value`` with number-like strings made numbers where every schema that types it wants a
    number (an integer where it wants only integers and the value is whole), and none a string."""
    if isinstance(value, dict):
        return {k: coerce_numbers(v, _children(schemas, k, root), root) for k, v in value.items()}
    if isinstance(value, list):
        return [coerce_numbers(v, _children(schemas, None, root), root) for v in value]
    if not (isinstance(value, str) and NUMBER.fullmatch(value.strip())):
        return value
    types = set()
    for s in (b for schema in schemas for b in _branches(schema, root)):
        t = s.get("type", [])
        types |= {t} if isinstance(t, str) else set(t)
    if "string" in types or not types & {"number", "integer"}:
        return value
    x = float(value)
    if "number" in types:
        return int(x) if x.is_integer() and "e" not in value.lower() and "." not in value else x
    return int(x) if x.is_integer() else value


def check_config(config, path):
    """Coerce numbers in place, then raise a ValueError naming the first violation's key path."""
    schema = yaml.safe_load(open(path))
    config.update(coerce_numbers(dict(config), [schema], schema))
    error = jsonschema.exceptions.best_match(jsonschema.validators.validator_for(schema)(schema).iter_errors(config))
    if error is not None:
        key = ".".join(str(p) for p in error.absolute_path) or "(the top level)"
        detail = error.schema.get("description") if isinstance(error.schema, dict) else None
        raise ValueError(
            f"config key {key}: {error.message}\n"
            + (f"  ({key}: {detail})\n" if detail else "")
            + f"  Every key is described in {path}; fix it in the config file that sets it."
        )


def anchor_paths(config, launch):
    """Relative data paths of a config (local story files, a CIFAR-5M folder, a tokenizer) made
    absolute from ``launch``, the folder Snakemake was started in, before ``workdir`` moves into
    the run's folder."""
    anchored = lambda path: os.path.normpath(os.path.join(launch, path))  # os.path.abspath, from launch
    for d in config["data"].values():
        src = d["source"]
        if "files" in src:
            src["files"] = {split: [anchored(f) for f in files] for split, files in src["files"].items()}
        if "path" in src:
            src["path"] = anchored(src["path"])
        if d.get("tokenizer"):
            d["tokenizer"] = anchored(d["tokenizer"])


def run_folder(config):
    """Where a config's results live, from the folder Snakemake was started in: ``runs/<run_name>``,
    or there itself without a run name."""
    return os.path.join("runs", config["run_name"]) if "run_name" in config else "."


def launch_folder(config):
    """The folder Snakemake was started in. A cluster job's Snakemake starts inside the run folder
    (its master's working directory), so there it is the folder that holds the run folder: applying
    ``workdir`` again would nest ``runs/<name>/runs/<name>`` (seen through profiles/slurm)."""
    here, folder = os.path.normpath(os.getcwd()), os.path.normpath(run_folder(config))
    if folder != "." and here.endswith(os.sep + folder):
        return here[: -len(folder) - 1]
    return here


check_config(config, SCHEMA)
# A section an overlay switched off (`vit: null`) is left out while Snakemake's validate fills in
# the schema's defaults (it would fill them into the null), then kept as null: no jobs of it.
_off = {key: config.pop(key) for key in [k for k, v in config.items() if v is None]}
validate(config, SCHEMA)
config.update(_off)
LAUNCH = launch_folder(config)
anchor_paths(config, LAUNCH)

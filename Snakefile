# spectral-reach: the paper "Spectral Reach" end to end. See README.md.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/rfm.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/lm.smk"
include: "workflow/rules/probe.smk"
include: "workflow/rules/checks.smk"
include: "workflow/rules/vit.smk"
include: "workflow/rules/unknown.smk"


rule all:
    input:
        all_targets(),
    default_target: True

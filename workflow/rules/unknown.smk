# Targets that name no configured run or data set: instead of Snakemake's bare "no rule to
# produce", an error that lists the valid values. The constraints match only paths that no
# other rule can make (a lookahead excludes every configured run), so valid targets never see it.


rule unknown_run:
    input:
        unknown_run,
    output:
        "results/{kind}/{a}/{b}/seed{seed}/{file}",
    log:
        "logs/unknown_run/{kind}/{a}/{b}/seed{seed}/{file}.log",
    benchmark:
        "logs/benchmarks/unknown_run/{kind}/{a}/{b}/seed{seed}/{file}.tsv"
    wildcard_constraints:
        kind=not_one_of(f"{k}/{r}" for k, rs in configured_runs().items() for r in rs) + "(?:lm|probe|vit)",
        a="[^/]+",
        b="[^/]+",
        seed="[^/]+",
        file=".+",
    localrule: True
    conda:
        "../../envs/spectral-reach.yaml"
    shell:
        "false"


rule unknown_dataset:
    input:
        unknown_dataset,
    output:
        "results/data/{dataset}/{file}",
    log:
        "logs/unknown_dataset/{dataset}/{file}.log",
    benchmark:
        "logs/benchmarks/unknown_dataset/{dataset}/{file}.tsv"
    wildcard_constraints:
        dataset=not_one_of(config["data"]) + "[^/]+",
        file=".+",
    localrule: True
    conda:
        "../../envs/spectral-reach.yaml"
    shell:
        "false"

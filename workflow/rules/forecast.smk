# What the config's training jobs will cost on the device that runs this rule (not part of the
# default target): snakemake results/forecast/forecast.md [--configfile config/paper.yaml].


rule forecast:
    output:
        csv="results/forecast/forecast.csv",
        md="results/forecast/forecast.md",
    log:
        "logs/forecast/forecast.log",
    benchmark:
        "logs/benchmarks/forecast/forecast.tsv"
    conda:
        "../../envs/spectral-reach.yaml"
    threads: 1
    resources:
        **config["forecast"]["resources"],
    params:
        jobs=forecast_jobs(),
        warmup=config["forecast"]["warmup"],
        repeats=config["forecast"]["repeats"],
    shell:
        "spectral-reach forecast --jobs {params.jobs:q} --warmup {params.warmup} --repeats {params.repeats}"
        " --out-csv {output.csv} --out-md {output.md} > {log} 2>&1"

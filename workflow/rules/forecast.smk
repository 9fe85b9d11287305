# What the config's jobs will cost (not part of the default target): snakemake
# results/forecast/forecast.md [--configfile config/paper.yaml]. One job per kind of job, so a
# forecast cut short keeps what it timed: training kinds on the device these rules get (a GPU at
# paper scale), the CPU jobs (checks, RFM) on a CPU node with their own memory.


rule forecast_job:
    input:
        settings=params_file("forecast_job"),
    output:
        "results/forecast/jobs/{kind}/{group}/{size}.csv",
    log:
        "logs/forecast/{kind}/{group}/{size}.log",
    benchmark:
        "logs/benchmarks/forecast/{kind}/{group}/{size}.tsv"
    wildcard_constraints:
        kind="lm_train|probe_train|variant_train|vit_train",
        size="[^/]+",  # language-model or ViT sizes
    conda:
        "../../envs/spectral-reach.yaml"
    threads: 1
    resources:
        **config["forecast"]["resources"],
    params:
        job=forecast_job,
        warmup=config["forecast"]["warmup"],
        repeats=config["forecast"]["repeats"],
    shell:
        logged(
            "spectral-reach forecast-job --job {params.job:q} --warmup {params.warmup} --repeats {params.repeats}"
            " --out {output}"
        )


use rule forecast_job as forecast_cpu_job with:
    input:
        settings=params_file("forecast_cpu_job"),
    wildcard_constraints:
        kind="hutchinson_cv|entk_spectrum|rfm_lnp",
        size="[^/]+",
    resources:
        mem_mb=lambda w: section_resource(cpu_section(w.kind), "mem_mb")(w, 1),
        runtime=config["forecast"]["resources"]["runtime"],


rule forecast:
    input:
        [f"results/forecast/jobs/{kind}/{group}/{size}.csv" for kind, group, size in forecast_jobs()],
    output:
        csv="results/forecast/forecast.csv",
        md="results/forecast/forecast.md",
    log:
        "logs/forecast/forecast.log",
    conda:
        "../../envs/spectral-reach.yaml"
    shell:
        logged("spectral-reach forecast --tables {input} --out-csv {output.csv} --out-md {output.md}")


localrules:
    forecast,

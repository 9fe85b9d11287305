# The optimizer question in the theory model (issue 39; config rfm_optimizers, where present).


rule rfm_optimizers:
    input:
        settings=params_file("rfm_optimizers"),
    output:
        finals="results/rfm/optimizers/s{s}.csv",
        lnp="results/rfm/optimizers/s{s}_lnp.parquet",
    log:
        "logs/rfm_optimizers/s{s}.log",
    benchmark:
        "logs/benchmarks/rfm_optimizers/s{s}.tsv"
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        settings=lambda w: json.dumps(
            {k: v for k, v in RFM_OPTIMIZERS.items() if k not in ("alphas", "published")}, sort_keys=True
        ),
    shell:
        logged(
            "spectral-reach rfm-optimizers --alpha {wildcards.s} --settings {params.settings:q}"
            " --out-finals {output.finals} --out-lnp {output.lnp}"
        )


rule rfm_optimizer_fits:
    input:
        finals=expand("results/rfm/optimizers/s{s}.csv", s=RFM_OPTIMIZER_ALPHAS),
    output:
        report("results/rfm/optimizers/fits.csv", caption="../report/rfm_optimizer_fits.rst", category="Fig. 14"),
    log:
        "logs/rfm_optimizer_fits/fits.log",
    benchmark:
        "logs/benchmarks/rfm_optimizer_fits/fits.tsv"
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        fit_max_rel_error=config["analysis"]["fit_max_rel_error"],
    shell:
        logged(
            "spectral-reach rfm-optimizer-fits --finals {input.finals} --fit-max-rel-error {params.fit_max_rel_error}"
            " --out {output}"
        )


rule fig14:
    input:
        template=caption_template("fig14"),
        finals=expand("results/rfm/optimizers/s{s}.csv", s=RFM_OPTIMIZER_ALPHAS),
        lnp=expand("results/rfm/optimizers/s{s}_lnp.parquet", s=RFM_OPTIMIZER_ALPHAS),
        fits="results/rfm/optimizers/fits.csv",
    output:
        caption=caption("fig14"),
        pdf="figures/fig14_rfm_optimizers.pdf",
        png=report("figures/fig14_rfm_optimizers.png", caption=report_caption("fig14"), category="Fig. 14"),
    log:
        "logs/fig14/fig14.log",
    benchmark:
        "logs/benchmarks/fig14/fig14.tsv"
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        style=figure_style("fig14"),
        published=json.dumps(RFM_OPTIMIZERS.get("published", {}), sort_keys=True),
    shell:
        figure_command(
            "spectral-reach fig14 --finals {input.finals} --lnp {input.lnp} --fits {input.fits}"
            " --published {params.published:q}"
        )


localrules:
    rfm_optimizer_fits,
    fig14,

# Random-feature models against theory: paper Sec. 3.2, Fig. 3.


rule rfm_lnp:
    input:
        settings=params_file("rfm_lnp"),
    output:
        "results/rfm/alpha{alpha}.parquet",
    log:
        "logs/rfm_lnp/alpha{alpha}.log",
    benchmark:
        "logs/benchmarks/rfm_lnp/alpha{alpha}.tsv"
    conda:
        "../../envs/spectral-reach.yaml"
    threads: 1
    resources:
        mem_mb=section_resource(config["rfm"], "mem_mb"),
        runtime=section_resource(config["rfm"], "runtime"),
    params:
        rfm=lambda w: rfm_params(),
    shell:
        logged(
            "spectral-reach rfm-lnp --alpha {wildcards.alpha} --n-samples {params.rfm[n_samples]}"
            " --input-dim {params.rfm[input_dim]} --width {params.rfm[width]} --seeds {params.rfm[seeds]}"
            " --first-seed {params.rfm[first_seed]} --out {output}"
        )


rule rfm_theory:
    output:
        "results/rfm/theory.csv",
    log:
        "logs/rfm_theory/theory.log",
    benchmark:
        "logs/benchmarks/rfm_theory/theory.tsv"
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        alphas=config["rfm"]["alphas"],
        input_dim=config["rfm"]["input_dim"],
        kernel_samples=config["rfm"]["kernel_samples"],
        teacher_draws=config["rfm"]["teacher_draws"],
        seed=config["rfm"]["theory_seed"],
    shell:
        logged(
            "spectral-reach rfm-theory --alphas {params.alphas} --input-dim {params.input_dim}"
            " --kernel-samples {params.kernel_samples} --teacher-draws {params.teacher_draws} --seed {params.seed} --out {output}"
        )


rule rfm_summary:
    input:
        lnp=expand("results/rfm/alpha{alpha}.parquet", alpha=ALPHAS),
        theory="results/rfm/theory.csv",
    output:
        lnp="results/rfm/lnp.parquet",
        csv=report("results/rfm/deviations.csv", caption="../report/rfm_deviations.rst", category="Fig. 03"),
        md="results/rfm/deviations.md",
    log:
        "logs/rfm_summary/summary.log",
    benchmark:
        "logs/benchmarks/rfm_summary/summary.tsv"
    conda:
        "../../envs/spectral-reach.yaml"
    shell:
        logged(
            "spectral-reach rfm-summary --lnp {input.lnp} --theory {input.theory}"
            " --out-lnp {output.lnp} --out-csv {output.csv} --out-md {output.md}"
        )


rule fig03:
    input:
        template=caption_template("fig03"),
        lnp="results/rfm/lnp.parquet",
        theory="results/rfm/theory.csv",
        deviations="results/rfm/deviations.csv",
    output:
        caption=caption("fig03"),
        pdf="figures/fig03_rfm.pdf",
        png=report("figures/fig03_rfm.png", caption=report_caption("fig03"), category="Fig. 03"),
    log:
        "logs/fig03/fig03.log",
    benchmark:
        "logs/benchmarks/fig03/fig03.tsv"
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        style=figure_style("fig03"),
        input_dim=config["rfm"]["input_dim"],
    shell:
        figure_command(
            "spectral-reach fig03 --lnp {input.lnp} --theory {input.theory} --deviations {input.deviations}"
            " --input-dim {params.input_dim}"
        )


localrules:
    rfm_theory,
    rfm_summary,
    fig03,

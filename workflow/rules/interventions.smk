# The intervention study (paper Sec. 6-7, issue 39): each data set's language models trained again
# per variant (lm.<dataset>.variants: optimizer, schedule, initialisation, learning rate), against the
# data set's own runs (the base), summarised, tabled, drawn (Fig. 13) and judged in the claims table.


wildcard_constraints:
    variant=constraint(sorted({v for d in LM_DATASETS for v in variants(d)})),


use rule lm_train as variant_train with:
    input:
        data=lambda w: data_files(w.dataset),
        settings=params_file("variant_train"),
    output:
        **(
            {"lnp_groups": "results/variants/{dataset}/{variant}/{size}/seed{seed}/lnp_groups.parquet"}
            if LNP_GROUPS
            else {}
        ),
        model=directory("results/variants/{dataset}/{variant}/{size}/seed{seed}/model"),
        metrics="results/variants/{dataset}/{variant}/{size}/seed{seed}/metrics.parquet",
        lnp="results/variants/{dataset}/{variant}/{size}/seed{seed}/lnp.parquet",
        eval="results/variants/{dataset}/{variant}/{size}/seed{seed}/eval.parquet",
        done="results/variants/{dataset}/{variant}/{size}/seed{seed}/done.json",
    log:
        "logs/variant_train/{dataset}/{variant}/{size}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/variant_train/{dataset}/{variant}/{size}/seed{seed}.tsv"
    params:
        spec=lambda w: lm_spec(w.dataset, w.size, w.seed, variant=w.variant),
        state="results/checkpoints/variants/{dataset}/{variant}/{size}/seed{seed}",
        data_dir="results/data/{dataset}",
        checksum_max_mb=config["data_checks"]["checksum_max_mb"],
        result_version=RESULT_VERSION,  # a bump reruns every finished run (spectral_reach/version.py)
        out_dir="results/variants/{dataset}/{variant}/{size}/seed{seed}",


rule variant_summary:
    input:
        unpack(lambda w: run_files(intervention_dirs(w.dataset), RUN_FILES)),
        settings=lambda w: params_paths("lm_train", ("size", "seed"), lm_runs(w.dataset), dataset=w.dataset)
        + params_paths("variant_train", ("variant", "size", "seed"), variant_runs(w.dataset), dataset=w.dataset),
    output:
        runs="results/variants/{dataset}/summary/runs.csv",
        lnp="results/variants/{dataset}/summary/lnp_windows.parquet",
        curves="results/variants/{dataset}/summary/curves.parquet",
    log:
        "logs/variant_summary/{dataset}.log",
    benchmark:
        "logs/benchmarks/variant_summary/{dataset}.tsv"
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        run_keys=lambda w: intervention_keys(w.dataset),
        final_fraction=config["analysis"]["final_loss_fraction"],
        raw_steps=config["analysis"]["raw_steps"],
    shell:
        logged(
            "spectral-reach variant-summary --keys {params.run_keys:q} --done {input.done} --metrics {input.metrics}"
            " --lnp {input.lnp} --eval {input.eval} --settings {input.settings} --final-fraction {params.final_fraction}"
            " --raw-steps {params.raw_steps} --out-runs {output.runs} --out-lnp {output.lnp} --out-curves {output.curves}"
        )


rule interventions_table:
    input:
        runs="results/variants/{dataset}/summary/runs.csv",
        lnp="results/variants/{dataset}/summary/lnp_windows.parquet",
    output:
        csv=report(
            "results/tables/interventions_{dataset}.csv", caption="../report/interventions.rst", category="Fig. 13"
        ),
        md="results/tables/interventions_{dataset}.md",
        fits="results/variants/{dataset}/summary/fits.csv",
    log:
        "logs/interventions_table/{dataset}.log",
    benchmark:
        "logs/benchmarks/interventions_table/{dataset}.tsv"
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        fit_max_rel_error=config["analysis"]["fit_max_rel_error"],
    shell:
        logged(
            "spectral-reach interventions-table --runs {input.runs} --lnp {input.lnp}"
            " --fit-max-rel-error {params.fit_max_rel_error} --out-csv {output.csv} --out-md {output.md}"
            " --out-fits {output.fits}"
        )


rule fig13:
    input:
        template=caption_template("fig13"),
        runs=lambda w: f"results/variants/{fig13_dataset()}/summary/runs.csv",
        lnp=lambda w: f"results/variants/{fig13_dataset()}/summary/lnp_windows.parquet",
        table=lambda w: f"results/tables/interventions_{fig13_dataset()}.csv",
        fits=lambda w: f"results/variants/{fig13_dataset()}/summary/fits.csv",
        # the base runs' parameter groups at the drawn size, where the runs measured them
        groups=lambda w: [
            f"{lm_run_dir(fig13_dataset(), s, seed)}/lnp_groups.parquet"
            for s, seed in lm_runs(fig13_dataset())
            if LNP_GROUPS and s == fig13_size()
        ],
    output:
        caption=caption("fig13"),
        pdf="figures/fig13_interventions.pdf",
        png=report("figures/fig13_interventions.png", caption=report_caption("fig13"), category="Fig. 13"),
    log:
        "logs/fig13/fig13.log",
    benchmark:
        "logs/benchmarks/fig13/fig13.tsv"
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        style=figure_style("fig13"),
        size=lambda w: fig13_size(),
    shell:
        figure_command(
            "spectral-reach fig13 --runs {input.runs} --lnp {input.lnp} --table {input.table} --fits {input.fits}"
            " --size {params.size} --groups {input.groups}"
        )


localrules:
    variant_summary,
    interventions_table,
    fig13,

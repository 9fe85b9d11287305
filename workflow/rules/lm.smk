# Language models per data set, size and seed, with LNP in the loop (paper Sec. 4, App. B.2.1-B.2.2).


rule lm_train:
    input:
        data=lambda w: data_files(w.dataset),
        settings=params_file("lm_train"),
    output:
        **({"lnp_groups": "results/lm/{dataset}/{size}/seed{seed}/lnp_groups.parquet"} if LNP_GROUPS else {}),
        model=directory("results/lm/{dataset}/{size}/seed{seed}/model"),
        metrics="results/lm/{dataset}/{size}/seed{seed}/metrics.parquet",
        lnp="results/lm/{dataset}/{size}/seed{seed}/lnp.parquet",
        eval="results/lm/{dataset}/{size}/seed{seed}/eval.parquet",
        done="results/lm/{dataset}/{size}/seed{seed}/done.json",
    log:
        "logs/lm_train/{dataset}/{size}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/lm_train/{dataset}/{size}/seed{seed}.tsv"
    priority: 1  # long jobs before summaries and figures: none starts last, alone on a core
    group:
        lambda w: pack_group(lm_resources(w.dataset, w.size))
    conda:
        "../../envs/spectral-reach.yaml"
    threads: 1
    resources:
        gpu=lm_resource("gpu"),
        mem_mb=lm_resource("mem_mb"),
        runtime=lm_resource("runtime"),
        cpus_per_gpu=lm_resource("cpus_per_gpu"),
        gres=lm_resource("gres"),
        gpu_share=lm_resource("gpu_share"),
    params:
        spec=lambda w: lm_spec(w.dataset, w.size, w.seed),
        # Resume checkpoints: not an output, so Snakemake does not delete them before a rerun.
        state="results/checkpoints/lm/{dataset}/{size}/seed{seed}",
        data_dir="results/data/{dataset}",
        checksum_max_mb=config["data_checks"]["checksum_max_mb"],
        result_version=RESULT_VERSION,  # a bump reruns every finished run (spectral_reach/version.py)
        out_dir="results/lm/{dataset}/{size}/seed{seed}",
    shell:
        logged(
            "spectral-reach train-lm --spec {params.spec:q} --data-dir {params.data_dir} --out-dir {params.out_dir}"
            " --state-dir {params.state}"
            " --checksum-max-mb {params.checksum_max_mb}"
        )


rule lm_summary:
    input:
        unpack(lambda w: run_files([lm_run_dir(w.dataset, *run) for run in lm_runs(w.dataset)], RUN_FILES)),
        settings=lambda w: params_paths("lm_train", ("size", "seed"), lm_runs(w.dataset), dataset=w.dataset),
    output:
        runs="results/lm/{dataset}/summary/runs.csv",
        lnp="results/lm/{dataset}/summary/lnp_windows.parquet",
        curves="results/lm/{dataset}/summary/curves.parquet",
        fits=report("results/lm/{dataset}/summary/fits.csv", caption="../report/fits.rst", category="Fig. 01 and 07"),
    log:
        "logs/lm_summary/{dataset}.log",
    benchmark:
        "logs/benchmarks/lm_summary/{dataset}.tsv"
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        run_keys=lambda w: json.dumps([{"size": s, "seed": int(seed)} for s, seed in lm_runs(w.dataset)]),
        final_fraction=config["analysis"]["final_loss_fraction"],
        raw_steps=config["analysis"]["raw_steps"],
        fit_max_rel_error=config["analysis"]["fit_max_rel_error"],
    shell:
        logged(
            "spectral-reach lm-summary --keys {params.run_keys:q} --done {input.done} --metrics {input.metrics}"
            " --lnp {input.lnp} --eval {input.eval} --settings {input.settings} --final-fraction {params.final_fraction}"
            " --raw-steps {params.raw_steps} --out-runs {output.runs} --out-lnp {output.lnp}"
            " --out-curves {output.curves} --fit-max-rel-error {params.fit_max_rel_error} --out-fits {output.fits}"
        )


rule lm_table:
    output:
        md="results/tables/lm_sizes_{dataset}.md",
        csv=report("results/tables/lm_sizes_{dataset}.csv", caption="../report/lm_sizes.rst", category="Tables 1-2"),
    log:
        "logs/lm_table/{dataset}.log",
    benchmark:
        "logs/benchmarks/lm_table/{dataset}.tsv"
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        sizes=lambda w: json.dumps(
            {s: {k: v for k, v in c.items() if k != "resources"} for s, c in config["lm"][w.dataset]["sizes"].items()},
            sort_keys=True,
        ),
        vocab_size=lambda w: config["data"][w.dataset]["vocab_size"],
        tolerance=config["analysis"]["param_tolerance"],
    shell:
        logged(
            "spectral-reach lm-table --sizes {params.sizes:q} --vocab-size {params.vocab_size}"
            " --tolerance {params.tolerance} --out-md {output.md} --out-csv {output.csv}"
        )


localrules:
    lm_summary,
    lm_table,


rule lm_isocompute:
    input:
        runs="results/lm/{dataset}/summary/runs.csv",
        curves="results/lm/{dataset}/summary/curves.parquet",
        lnp="results/lm/{dataset}/summary/lnp_windows.parquet",
    output:
        loss="results/lm/{dataset}/summary/isocompute_loss.csv",
        pos="results/lm/{dataset}/summary/isocompute_chi_pos.csv",
    log:
        "logs/lm_isocompute/{dataset}.log",
    benchmark:
        "logs/benchmarks/lm_isocompute/{dataset}.tsv"
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        budgets=config["analysis"]["isocompute_budgets"],
    shell:
        logged(
            "spectral-reach lm-isocompute --runs {input.runs} --curves {input.curves} --lnp {input.lnp}"
            " --budgets {params.budgets} --out-loss {output.loss} --out-pos {output.pos}"
        )


rule fig01:
    input:
        template=caption_template("fig01"),
        runs=expand("results/lm/{dataset}/summary/runs.csv", dataset=LM_DATASETS),
        lnp=expand("results/lm/{dataset}/summary/lnp_windows.parquet", dataset=LM_DATASETS),
        fits=expand("results/lm/{dataset}/summary/fits.csv", dataset=LM_DATASETS),
    output:
        caption=caption("fig01"),
        pdf="figures/fig01_scaling.pdf",
        png=report("figures/fig01_scaling.png", caption=report_caption("fig01"), category="Fig. 01"),
    log:
        "logs/fig01/fig01.log",
    benchmark:
        "logs/benchmarks/fig01/fig01.tsv"
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        style=figure_style("fig01"),
        datasets=LM_DATASETS,
    shell:
        figure_command(
            "spectral-reach fig01 --datasets {params.datasets} --runs {input.runs} --lnp {input.lnp} --fits {input.fits}"
        )


rule fig07:
    input:
        template=caption_template("fig07"),
        runs=expand("results/lm/{dataset}/summary/runs.csv", dataset=LM_DATASETS),
        fits=expand("results/lm/{dataset}/summary/fits.csv", dataset=LM_DATASETS),
    output:
        caption=caption("fig07"),
        pdf="figures/fig07_test_loss.pdf",
        png=report("figures/fig07_test_loss.png", caption=report_caption("fig07"), category="Fig. 07"),
    log:
        "logs/fig07/fig07.log",
    benchmark:
        "logs/benchmarks/fig07/fig07.tsv"
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        style=figure_style("fig07"),
        datasets=LM_DATASETS,
    shell:
        figure_command("spectral-reach fig07 --datasets {params.datasets} --runs {input.runs} --fits {input.fits}")


rule fig08:
    input:
        template=caption_template("fig08"),
        loss=expand("results/lm/{dataset}/summary/isocompute_loss.csv", dataset=LM_DATASETS),
        pos=expand("results/lm/{dataset}/summary/isocompute_chi_pos.csv", dataset=LM_DATASETS),
    output:
        caption=caption("fig08"),
        pdf="figures/fig08_isocompute.pdf",
        png=report("figures/fig08_isocompute.png", caption=report_caption("fig08"), category="Fig. 08"),
    log:
        "logs/fig08/fig08.log",
    benchmark:
        "logs/benchmarks/fig08/fig08.tsv"
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        style=figure_style("fig08"),
        datasets=LM_DATASETS,
    shell:
        figure_command("spectral-reach fig08 --datasets {params.datasets} --loss {input.loss} --pos {input.pos}")


# Figs. 10 and 11 (the paper draws one data set each): every component of every data set, a row of
# panels each, in one figure.
rule fig10:
    input:
        template=caption_template("components"),
        lnp=expand("results/lm/{dataset}/summary/lnp_windows.parquet", dataset=LM_DATASETS),
        runs=expand("results/lm/{dataset}/summary/runs.csv", dataset=LM_DATASETS),
    output:
        caption=caption("fig10"),
        pdf="figures/fig10_components.pdf",
        png=report("figures/fig10_components.png", caption=report_caption("fig10"), category="Fig. 10-11"),
    log:
        "logs/fig10/fig10.log",
    benchmark:
        "logs/benchmarks/fig10/fig10.tsv"
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        style=figure_style("fig10"),
        datasets=LM_DATASETS,
    shell:
        figure_command(
            "spectral-reach fig-components --datasets {params.datasets} --lnp {input.lnp} --runs {input.runs}"
        )


localrules:
    lm_isocompute,
    fig01,
    fig07,
    fig08,
    fig10,

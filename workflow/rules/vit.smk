# Vision transformers on CIFAR-5M classification, standard and muP (paper App. B.2.3-B.2.4, D.3).


rule vit_train:
    input:
        data=lambda w: split_files(VIT["dataset"], ("_rgb", "_labels")) + [verified(VIT["dataset"])],
        settings=params_file("vit_train"),
    output:
        model=directory("results/vit/{par}/{vsize}/seed{seed}/model"),
        metrics="results/vit/{par}/{vsize}/seed{seed}/metrics.parquet",
        lnp="results/vit/{par}/{vsize}/seed{seed}/lnp.parquet",
        eval="results/vit/{par}/{vsize}/seed{seed}/eval.parquet",
        done="results/vit/{par}/{vsize}/seed{seed}/done.json",
    log:
        "logs/vit_train/{par}/{vsize}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/vit_train/{par}/{vsize}/seed{seed}.tsv"
    priority: 1  # long jobs before summaries and figures: none starts last, alone on a core
    group:
        lambda w: pack_group(vit_resources(w.par, w.vsize))
    conda:
        "../../envs/spectral-reach.yaml"
    threads: 1
    resources:
        gpu=vit_resource("gpu"),
        mem_mb=vit_resource("mem_mb"),
        runtime=vit_resource("runtime"),
        cpus_per_gpu=vit_resource("cpus_per_gpu"),
        gres=vit_resource("gres"),
        gpu_share=vit_resource("gpu_share"),
    params:
        spec=lambda w: vit_spec(w.par, w.vsize, w.seed),
        # Resume checkpoints: not an output, so Snakemake does not delete them before a rerun.
        state="results/checkpoints/vit/{par}/{vsize}/seed{seed}",
        data_dir=lambda w: f"results/data/{VIT['dataset']}",
        checksum_max_mb=config["data_checks"]["checksum_max_mb"],
        result_version=RESULT_VERSION,  # a bump reruns every finished run (spectral_reach/version.py)
        out_dir="results/vit/{par}/{vsize}/seed{seed}",
    shell:
        logged(
            "spectral-reach train-vit --spec {params.spec:q} --data-dir {params.data_dir} --out-dir {params.out_dir}"
            " --state-dir {params.state}"
            " --checksum-max-mb {params.checksum_max_mb}"
        )


rule vit_summary:
    input:
        **run_files([vit_run_dir(*run) for run in vit_runs()], pick(RUN_FILES, ["done", "metrics", "lnp"])),
        settings=params_paths("vit_train", ("par", "vsize", "seed"), vit_runs()),
    output:
        runs="results/vit/summary/runs.csv",
        curves="results/vit/summary/curves.parquet",
        lnp="results/vit/summary/lnp_windows.parquet",
    log:
        "logs/vit_summary/summary.log",
    benchmark:
        "logs/benchmarks/vit_summary/summary.tsv"
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        run_keys=json.dumps([{"parametrization": p, "size": s, "seed": int(seed)} for p, s, seed in vit_runs()]),
        final_fraction=config["analysis"]["final_loss_fraction"],
        raw_steps=config["analysis"]["raw_steps"],
    shell:
        logged(
            "spectral-reach vit-summary --keys {params.run_keys:q} --done {input.done} --metrics {input.metrics}"
            " --lnp {input.lnp} --settings {input.settings} --final-fraction {params.final_fraction}"
            " --raw-steps {params.raw_steps} --out-runs {output.runs} --out-curves {output.curves}"
            " --out-lnp {output.lnp}"
        )


rule vit_table:
    output:
        md="results/tables/vit_sizes.md",
        csv=report("results/tables/vit_sizes.csv", caption="../report/vit_sizes.rst", category="Tables 3-4"),
    log:
        "logs/vit_table/table.log",
    benchmark:
        "logs/benchmarks/vit_table/table.tsv"
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        sizes=json.dumps(
            (
                {
                    p: {s: {k: v for k, v in c.items() if k != "resources"} for s, c in VIT[p]["sizes"].items()}
                    for p in PARAMETRIZATIONS
                }
                if VIT
                else {}
            ),
            sort_keys=True,
        ),
        tolerance=config["analysis"]["param_tolerance"],
    shell:
        logged(
            "spectral-reach vit-table --sizes {params.sizes:q} --tolerance {params.tolerance}"
            " --out-md {output.md} --out-csv {output.csv}"
        )


rule fig09:
    input:
        template=caption_template("fig09"),
        runs="results/vit/summary/runs.csv",
        lnp="results/vit/summary/lnp_windows.parquet",
        metrics="results/vit/summary/curves.parquet",
    output:
        caption=caption("fig09"),
        pdf="figures/fig09_vit.pdf",
        png=report("figures/fig09_vit.png", caption=report_caption("fig09"), category="Fig. 09"),
    log:
        "logs/fig09/fig09.log",
    benchmark:
        "logs/benchmarks/fig09/fig09.tsv"
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        style=figure_style("fig09"),
    shell:
        figure_command("spectral-reach fig09 --runs {input.runs} --lnp {input.lnp} --metrics {input.metrics}")


localrules:
    vit_summary,
    vit_table,
    fig09,

# Linear probes on pretrained and random backbones (paper Sec. 5, App. B.2.1-B.2.2): Figs. 4 and 5.
# A pretrained probe's backbone is the final model of the matching training run, so retraining
# a backbone reruns its probes and nothing else.


rule probe_train:
    input:
        data=lambda w: data_files(w.dataset),
        backbone=lambda w: [f"{lm_run_dir(w.dataset, w.size, w.seed)}/model"] if w.backbone == "pretrained" else [],
        settings=params_file("probe_train"),
    output:
        model=directory("results/probe/{dataset}/{size}/seed{seed}/{backbone}/model"),
        metrics="results/probe/{dataset}/{size}/seed{seed}/{backbone}/metrics.parquet",
        lnp="results/probe/{dataset}/{size}/seed{seed}/{backbone}/lnp.parquet",
        eval="results/probe/{dataset}/{size}/seed{seed}/{backbone}/eval.parquet",
        done="results/probe/{dataset}/{size}/seed{seed}/{backbone}/done.json",
    log:
        "logs/probe_train/{dataset}/{size}/seed{seed}_{backbone}.log",
    benchmark:
        "logs/benchmarks/probe_train/{dataset}/{size}/seed{seed}_{backbone}.tsv"
    wildcard_constraints:
        backbone="pretrained|random",
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
        spec=lambda w: lm_spec(w.dataset, w.size, w.seed, trainable="head"),
        backbone=lambda w: (
            f"--backbone {lm_run_dir(w.dataset, w.size, w.seed)}/model" if w.backbone == "pretrained" else ""
        ),
        state="results/checkpoints/probe/{dataset}/{size}/seed{seed}/{backbone}",
        data_dir="results/data/{dataset}",
        checksum_max_mb=config["data_checks"]["checksum_max_mb"],
        result_version=PROBE_VERSION,  # a bump reruns every finished probe (spectral_reach/version.py)
        out_dir="results/probe/{dataset}/{size}/seed{seed}/{backbone}",
    shell:
        logged(
            "spectral-reach train-lm --spec {params.spec:q} {params.backbone} --data-dir {params.data_dir}"
            " --out-dir {params.out_dir} --state-dir {params.state}"
            " --checksum-max-mb {params.checksum_max_mb}"
        )


rule probe_summary:
    input:
        pretrained=lambda w: [f"{probe_dir(w.dataset, *run)}/pretrained/lnp.parquet" for run in probe_runs(w.dataset)],
        random=lambda w: [f"{probe_dir(w.dataset, *run)}/random/lnp.parquet" for run in probe_runs(w.dataset)],
        pretrained_done=lambda w: [
            f"{probe_dir(w.dataset, *run)}/pretrained/done.json" for run in probe_runs(w.dataset)
        ],
        random_done=lambda w: [f"{probe_dir(w.dataset, *run)}/random/done.json" for run in probe_runs(w.dataset)],
        pretrained_settings=lambda w: params_paths(
            "probe_train", ("size", "seed"), probe_runs(w.dataset), dataset=w.dataset, backbone="pretrained"
        ),
        random_settings=lambda w: params_paths(
            "probe_train", ("size", "seed"), probe_runs(w.dataset), dataset=w.dataset, backbone="random"
        ),
        runs="results/lm/{dataset}/summary/runs.csv",
    output:
        ratios="results/probe/{dataset}/summary/ratios.csv",
        lnp="results/probe/{dataset}/summary/lnp_windows.parquet",
    log:
        "logs/probe_summary/{dataset}.log",
    benchmark:
        "logs/benchmarks/probe_summary/{dataset}.tsv"
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        run_keys=lambda w: json.dumps([{"size": s, "seed": int(seed)} for s, seed in probe_runs(w.dataset)]),
        steps=lambda w: config["lm"][w.dataset]["steps"],
        top_fraction=config["probe"]["top_fraction"],
        time_windows=json.dumps(config["probe"]["time_windows"]),
        raw_steps=config["analysis"]["raw_steps"],
    shell:
        logged(
            "spectral-reach probe-summary --keys {params.run_keys:q} --pretrained {input.pretrained}"
            " --random {input.random} --pretrained-done {input.pretrained_done} --random-done {input.random_done}"
            " --pretrained-settings {input.pretrained_settings} --random-settings {input.random_settings} --lm-runs {input.runs} --steps {params.steps}"
            " --top-fraction {params.top_fraction} --time-windows {params.time_windows:q}"
            " --raw-steps {params.raw_steps} --out-ratios {output.ratios} --out-lnp {output.lnp}"
        )


rule fig04:
    input:
        template=caption_template("fig04"),
        ratios=expand("results/probe/{dataset}/summary/ratios.csv", dataset=LM_DATASETS),
    output:
        caption=caption("fig04"),
        pdf="figures/fig04_probe_ratio.pdf",
        png=report("figures/fig04_probe_ratio.png", caption=report_caption("fig04"), category="Fig. 04"),
    log:
        "logs/fig04/fig04.log",
    benchmark:
        "logs/benchmarks/fig04/fig04.tsv"
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        style=figure_style("fig04"),
        datasets=LM_DATASETS,
    shell:
        figure_command("spectral-reach fig04 --datasets {params.datasets} --ratios {input.ratios}")


rule fig05:
    input:
        template=caption_template("fig05"),
        lm=expand("results/lm/{dataset}/summary/lnp_windows.parquet", dataset=LM_DATASETS),
        probe=expand("results/probe/{dataset}/summary/lnp_windows.parquet", dataset=LM_DATASETS),
        runs=expand("results/lm/{dataset}/summary/runs.csv", dataset=LM_DATASETS),
    output:
        caption=caption("fig05"),
        pdf="figures/fig05_chi_net.pdf",
        png=report("figures/fig05_chi_net.png", caption=report_caption("fig05"), category="Fig. 05"),
    log:
        "logs/fig05/fig05.log",
    benchmark:
        "logs/benchmarks/fig05/fig05.tsv"
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        style=figure_style("fig05"),
        datasets=LM_DATASETS,
    shell:
        figure_command(
            "spectral-reach fig05 --datasets {params.datasets} --lm {input.lm} --probe {input.probe} --runs {input.runs}"
        )


localrules:
    probe_summary,
    fig04,
    fig05,

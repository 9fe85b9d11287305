# Verification on trained models (paper App. B.1, D.5): Hutchinson convergence (Fig. 6) and the
# explicit eNTK of a reduced output space (Fig. 12). Each waits on one trained model only; priority
# 2 (above training, 1) starts it as soon as that model exists, so that it does not run alone at
# the end (it did: 25 s of a 10-minute demo on one core).


rule hutchinson_cv:
    input:
        model=lambda w: f"{lm_run_dir(**check_run('hutchinson'))}/model",
        data=lambda w: data_files(config["checks"]["hutchinson"]["dataset"]),
        settings=params_file("hutchinson_cv"),
    output:
        report("results/checks/hutchinson_cv.csv", caption="../report/hutchinson_cv.rst", category="Fig. 06"),
    log:
        "logs/hutchinson_cv/hutchinson_cv.log",
    benchmark:
        "logs/benchmarks/hutchinson_cv/hutchinson_cv.tsv"
    priority: 2
    conda:
        "../../envs/spectral-reach.yaml"
    resources:
        mem_mb=section_resource(config["checks"]["hutchinson"], "mem_mb"),
        runtime=section_resource(config["checks"]["hutchinson"], "runtime"),
    params:
        c=pick(config["checks"]["hutchinson"], ["samples", "draws", "per_call", "probe_seed", "ks"]),
        context_length=lambda w: config["lm"][config["checks"]["hutchinson"]["dataset"]]["context_length"],
        data_dir=lambda w: f"results/data/{config['checks']['hutchinson']['dataset']}",
    shell:
        logged(
            "spectral-reach hutchinson-cv --model {input.model} --data-dir {params.data_dir}"
            " --context-length {params.context_length} --samples {params.c[samples]} --draws {params.c[draws]}"
            " --per-call {params.c[per_call]} --seed {params.c[probe_seed]} --ks {params.c[ks]} --out {output}"
        )


rule entk_spectrum:
    input:
        model=lambda w: f"{lm_run_dir(**check_run('entk'))}/model",
        data=lambda w: data_files(config["checks"]["entk"]["dataset"]),
        settings=params_file("entk_spectrum"),
    output:
        spectrum="results/checks/entk_spectrum.parquet",
        shift=report("results/checks/entk_shift.csv", caption="../report/entk_shift.rst", category="Fig. 12"),
    log:
        "logs/entk_spectrum/entk_spectrum.log",
    benchmark:
        "logs/benchmarks/entk_spectrum/entk_spectrum.tsv"
    priority: 2
    conda:
        "../../envs/spectral-reach.yaml"
    resources:
        mem_mb=section_resource(config["checks"]["entk"], "mem_mb"),
        runtime=section_resource(config["checks"]["entk"], "runtime"),
    params:
        c=pick(config["checks"]["entk"], ["seed", "sample", "vocab_count", "positions"]),
        size=lambda w: json.dumps(json.loads(lm_spec(**check_run("entk")))["size"], sort_keys=True),
        vocab_size=lambda w: config["data"][config["checks"]["entk"]["dataset"]]["vocab_size"],
        context_length=lambda w: config["lm"][config["checks"]["entk"]["dataset"]]["context_length"],
        data_dir=lambda w: f"results/data/{config['checks']['entk']['dataset']}",
    shell:
        logged(
            "spectral-reach entk-spectrum --model {input.model} --size {params.size:q} --data-dir {params.data_dir}"
            " --context-length {params.context_length} --vocab-size {params.vocab_size} --seed {params.c[seed]}"
            " --sample {params.c[sample]} --vocab-count {params.c[vocab_count]} --positions {params.c[positions]}"
            " --out-spectrum {output.spectrum} --out-shift {output.shift}"
        )


rule fig06:
    input:
        template=caption_template("fig06"),
        cv="results/checks/hutchinson_cv.csv",
        lnp=expand("results/lm/{dataset}/summary/lnp_windows.parquet", dataset=LM_DATASETS),
        runs=expand("results/lm/{dataset}/summary/runs.csv", dataset=LM_DATASETS),
    output:
        caption=caption("fig06"),
        pdf="figures/fig06_hutchinson.pdf",
        png=report("figures/fig06_hutchinson.png", caption=report_caption("fig06"), category="Fig. 06"),
    log:
        "logs/fig06/fig06.log",
    benchmark:
        "logs/benchmarks/fig06/fig06.tsv"
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        style=figure_style("fig06"),
        datasets=LM_DATASETS,
    shell:
        figure_command(
            "spectral-reach fig06 --cv {input.cv} --datasets {params.datasets} --lnp {input.lnp} --runs {input.runs}"
        )


rule fig12:
    input:
        template=caption_template("fig12"),
        spectrum="results/checks/entk_spectrum.parquet",
        shift="results/checks/entk_shift.csv",
    output:
        caption=caption("fig12"),
        pdf="figures/fig12_entk.pdf",
        png=report("figures/fig12_entk.png", caption=report_caption("fig12"), category="Fig. 12"),
    log:
        "logs/fig12/fig12.log",
    benchmark:
        "logs/benchmarks/fig12/fig12.tsv"
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        style=figure_style("fig12"),
    shell:
        figure_command("spectral-reach fig12 --spectrum {input.spectrum} --shift {input.shift}")


localrules:
    fig06,
    fig12,

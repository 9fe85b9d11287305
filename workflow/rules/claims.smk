# The claims table: every claim of the paper judged on this run's own tables (results/claims.*),
# first in the report.


def claims_inputs():
    per_dataset = {
        "lm_runs": "results/lm/{dataset}/summary/runs.csv",
        "lm_lnp": "results/lm/{dataset}/summary/lnp_windows.parquet",
        "fits": "results/lm/{dataset}/summary/fits.csv",
        "probe_lnp": "results/probe/{dataset}/summary/lnp_windows.parquet",
        "ratios": "results/probe/{dataset}/summary/ratios.csv",
    }
    files = {k: expand(v, dataset=LM_DATASETS) for k, v in per_dataset.items()}
    if LM_DATASETS:
        files |= {"hutchinson": "results/checks/hutchinson_cv.csv", "entk": "results/checks/entk_shift.csv"}
    if VIT:
        files |= {"vit_runs": "results/vit/summary/runs.csv", "vit_lnp": "results/vit/summary/lnp_windows.parquet"}
    return files


def claims_flags(input):
    """The command's optional inputs, as flags, for those this run has."""
    names = ("lm_runs", "lm_lnp", "fits", "probe_lnp", "ratios", "vit_runs", "vit_lnp", "hutchinson", "entk")
    return " ".join(
        f"--{n.replace('_', '-')} {' '.join(str(p) for p in (input[n] if isinstance(input[n], list) else [input[n]]))}"
        for n in names
        if n in input.keys() and input[n]
    )


rule claims:
    input:
        unpack(lambda w: claims_inputs()),
        rfm="results/rfm/deviations.csv",
    output:
        csv="results/claims.csv",
        md="results/claims.md",
        html=report("results/claims.html", caption="../report/claims.rst", category="Claims"),
    log:
        "logs/claims/claims.log",
    benchmark:
        "logs/benchmarks/claims/claims.tsv"
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        datasets=LM_DATASETS,
        flags=lambda w, input: claims_flags(input),
        rfm_seeds=config["rfm"]["seeds"],
        frozen_chi_net_rtol=config["analysis"]["claims"]["frozen_chi_net_rtol"],
        hutchinson_sigmas=config["analysis"]["claims"]["hutchinson_sigmas"],
        run_name=config.get("run_name") or "(no run_name)",
    shell:
        logged(
            "spectral-reach claims --datasets {params.datasets} {params.flags} --rfm {input.rfm}"
            " --rfm-seeds {params.rfm_seeds} --frozen-chi-net-rtol {params.frozen_chi_net_rtol}"
            " --hutchinson-sigmas {params.hutchinson_sigmas} --run-name {params.run_name:q}"
            " --out-csv {output.csv} --out-md {output.md} --out-html {output.html}"
        )


localrules:
    claims,

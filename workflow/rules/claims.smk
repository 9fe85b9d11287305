# The claims table: every claim of the paper judged on this run's own tables (results/claims.*),
# first in the report.


rule claims:
    input:
        unpack(lambda w: claims_inputs()),
    output:
        csv="results/claims.csv",
        md="results/claims.md",
        html=report("results/claims.html", caption="../report/claims.rst", category="Claims"),
        record=provenance.RECORD,
    log:
        "logs/claims/claims.log",
    benchmark:
        "logs/benchmarks/claims/claims.tsv"
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        datasets=LM_DATASETS,
        flags=lambda w, input: claims_flags(input),
        frozen_chi_net_rtol=config["analysis"]["claims"]["frozen_chi_net_rtol"],
        hutchinson_sigmas=config["analysis"]["claims"]["hutchinson_sigmas"],
        run_name=config.get("run_name") or "(no run_name)",
        # the config's result-shaping part: any edit of it reruns this job, which records it
        config_record=json.dumps(provenance.result_config(config), sort_keys=True),
    shell:
        logged(
            "spectral-reach claims --datasets {params.datasets} {params.flags}"
            " --frozen-chi-net-rtol {params.frozen_chi_net_rtol}"
            " --hutchinson-sigmas {params.hutchinson_sigmas} --run-name {params.run_name:q}"
            " --out-csv {output.csv} --out-md {output.md} --out-html {output.html}"
            " --config-record {params.config_record:q} --out-record {output.record}"
        )


localrules:
    claims,

# Every cluster job's params as a file that the Snakemake master writes and the job takes as an
# input (common.smk: params_file, params_of). Snakemake keeps a job's params in its provenance,
# which only the master records: a cluster job that finishes while its master is dead (killed, or
# restarted later) has none, and Snakemake then ignores a change of its params. The rehearsal's lr
# edit left such a run at its old lr. This rule is local, so its provenance is always kept: an
# edit rewrites the file, and the job reruns because its input changed.


rule params_file:
    output:
        "results/settings/{rule}/{job}.json",
    log:
        "logs/settings/{rule}/{job}.log",
    wildcard_constraints:
        rule="[a-z0-9_]+",
        job=".+",
    localrule: True
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        values=lambda w: params_of(w.rule, w.job),
    shell:
        "printf '%s\\n' {params.values:q} > {output} 2> {log}"

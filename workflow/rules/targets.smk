# What can be asked for: the default targets (rule all), and the helpers that turn a target naming
# no configured run or data set into an error listing the valid ones (unknown.smk).


def vit_targets():
    if not VIT:
        return []
    return ["results/tables/vit_sizes.md", "figures/fig09_vit.pdf", "figures/fig09_vit.png"]


def lm_targets():
    figs = [
        "fig01_scaling",
        "fig04_probe_ratio",
        "fig05_chi_net",
        "fig06_hutchinson",
        "fig07_test_loss",
        "fig08_isocompute",
        "fig10_components",
        "fig12_entk",
    ]
    return (
        [f"results/tables/lm_sizes_{d}.md" for d in LM_DATASETS]
        + [f"results/probe/{d}/summary/ratios.csv" for d in LM_DATASETS]
        + [f"figures/{f}.{ext}" for f in figs for ext in ("pdf", "png")]
    )


def intervention_targets():
    if not intervention_datasets():
        return []
    tables = [f"results/tables/interventions_{d}.md" for d in intervention_datasets()]
    return tables + ["figures/fig13_interventions.pdf", "figures/fig13_interventions.png"]


def report_table_targets():
    """The HTML pages of the tables this config makes (report_tables.smk)."""
    per_dataset = {"lm_sizes": LM_DATASETS, "fits": LM_DATASETS, "probe_ratios": LM_DATASETS}
    per_dataset["interventions"] = intervention_datasets()
    pages = [expand(table_page(n), dataset=d) for n, d in per_dataset.items()]
    single = (
        (["rfm_deviations"] if RFM else [])
        + (["hutchinson_cv", "entk_shift"] if LM_DATASETS else [])
        + (["vit_sizes"] if VIT else [])
    )
    return [p for group in pages for p in group] + [table_page(n) for n in single]


def all_targets():
    return [
        "results/claims.md",
        *(["results/rfm/deviations.md", "figures/fig03_rfm.pdf", "figures/fig03_rfm.png"] if RFM else []),
        *lm_targets(),
        *vit_targets(),
        *intervention_targets(),
        *(["figures/fig14_rfm_optimizers.pdf", "figures/fig14_rfm_optimizers.png"] if RFM_OPTIMIZERS else []),
        *report_table_targets(),
    ]


def configured_runs():
    """``{kind: ["<a>/<b>/seed<n>", ...]}`` of every run the config defines, by results folder."""
    return {
        "lm": [f"{d}/{s}/seed{seed}" for d in LM_DATASETS for s, seed in lm_runs(d)],
        "probe": [f"{d}/{s}/seed{seed}" for d in LM_DATASETS for s, seed in probe_runs(d)],
        "vit": [f"{p}/{s}/seed{seed}" for p, s, seed in vit_runs()],
    }


def not_one_of(prefixes):
    """A regex that fails at the start of any of ``prefixes`` followed by '/'."""
    return f"(?!(?:{'|'.join(re.escape(p) for p in prefixes) or '(?!)'})/)"


def unknown_run(w):
    runs = configured_runs()[w.kind]
    raise ValueError(
        f"results/{w.kind}/{w.a}/{w.b}/seed{w.seed}: no such {w.kind} run in the config. "
        f"Valid runs under results/{w.kind}/: {', '.join(runs) or 'none'}"
    )


def unknown_dataset(w):
    raise ValueError(
        f"results/data/{w.dataset}: no data set {w.dataset!r} in the config (config key data). "
        f"Valid data sets: {', '.join(config['data'])}"
    )

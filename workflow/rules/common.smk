# Helpers shared by the rules: config slices, target lists, wildcard constraints.


def fmt_alpha(alpha):
    """The wildcard text of an alpha: '1.5', '2'."""
    return f"{alpha:g}"


ALPHAS = [fmt_alpha(a) for a in config["rfm"]["alphas"]]


wildcard_constraints:
    alpha="|".join(re.escape(a) for a in ALPHAS),


def pick(mapping, keys):
    """Only the keys a job uses, in a fixed order: editing another key, or re-ordering keys in
    a YAML file, does not change the job's params (Snakemake compares their text)."""
    return {k: mapping[k] for k in keys}


def config_slice(section, keys):
    return pick(config[section], keys)


def figure_style(name):
    return pick(config["figures"][name], ["width", "height", "dpi"])


def rfm_params():
    """What one RFM measurement job depends on (each alpha is its own job)."""
    return config_slice("rfm", ["n_samples", "input_dim", "width", "seeds", "first_seed"])


def all_targets():
    return [
        "results/rfm/deviations.md",
        "figures/fig03_rfm.pdf",
        "figures/fig03_rfm.png",
    ]

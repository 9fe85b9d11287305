# What each training run is: the runs a config defines, their folders, their settings (spec, as
# sorted JSON so that params compare by content), their resources, and the files a summary reads.
import json
import os

from spectral_reach import cadence


def lm_runs(dataset):
    """``(size, seed)`` of every training run of a data set."""
    c = config["lm"][dataset]
    return [(size, seed) for size in c["sizes"] for seed in c["seeds"]]


def probe_runs(dataset):
    """``(size, seed)`` of every probe pair (pretrained and random backbone) of a data set."""
    return [(size, seed) for size, seed in lm_runs(dataset) if seed in config["probe"]["seeds"]]


def check_run(name):
    """The training run a verification check reads (``checks.<name>``: dataset, size, seed)."""
    c = config["checks"][name]
    if (
        c["dataset"] not in LM_DATASETS
        or c["size"] not in config["lm"][c["dataset"]]["sizes"]
        or c["seed"] not in config["lm"][c["dataset"]]["seeds"]
    ):
        raise ValueError(
            f"config checks.{name}: no training run {c['dataset']}/{c['size']}/seed{c['seed']} "
            f"(datasets {LM_DATASETS}; sizes and seeds under lm.<dataset>)"
        )
    return {"dataset": c["dataset"], "size": c["size"], "seed": c["seed"]}


for _check in ("hutchinson", "entk"):
    check_run(_check)


def lm_run_dir(dataset, size, seed):
    return f"results/lm/{dataset}/{size}/seed{seed}"


def probe_dir(dataset, size, seed):
    """The folder of one probe pair: ``pretrained/`` and ``random/`` runs."""
    return f"results/probe/{dataset}/{size}/seed{seed}"


def run_files(dirs, files):
    """``{name: [<dir>/<file> for each run folder]}``: the files a summary rule reads, as named inputs."""
    return {name: [f"{d}/{file}" for d in dirs] for name, file in files.items()}


RUN_FILES = {"done": "done.json", "metrics": "metrics.parquet", "lnp": "lnp.parquet", "eval": "eval.parquet"}


def lm_spec(dataset, size, seed, trainable="all", variant=None):
    """Everything one training run depends on, as sorted JSON (so params compare by content); a
    ``variant`` (config lm.<dataset>.variants) overrides the optimizer, schedule, initialisation and
    learning rate, each key only where it differs from the base run's (whose spec stays as it was)."""
    c, d = config["lm"][dataset], config["data"][dataset]
    shape = {k: v for k, v in c["sizes"][size].items() if k not in ("lr", "resources")}
    spec = {
        "size": shape,
        "vocab_size": d["vocab_size"],
        "lr": c["sizes"][size]["lr"],
        "seed": int(seed),
        "betas": c["optimizer"]["betas"],
        "eps": c["optimizer"]["eps"],
        "weight_decay": c["optimizer"]["weight_decay"],
        "trainable": trainable,
        **pick(
            c,
            [
                "context_length",
                "batch_size",
                "steps",
                "warmup",
                "schedule",
                "data_seed",
                "lnp",
                "eval",
                "checkpoint_every",
                "device",
                "precision",
                "compile",
            ],
        ),
    }
    if LNP_GROUPS and trainable == "all":  # only when asked: a finished run's params stay as they were
        spec["lnp"] = {**spec["lnp"], "groups": True}
    v = c["variants"][variant] if variant else {}
    spec["lr"] = v.get("lr", spec["lr"]) * v.get("lr_mult", 1)
    spec["schedule"] = v.get("schedule", spec["schedule"])
    if spec["schedule"] == "wsd":
        spec["decay_fraction"] = v.get("decay_fraction", c.get("decay_fraction"))
    if v.get("optimizer", "adamw") != "adamw":
        spec["optimizer"] = {"name": v["optimizer"], "momentum": v["momentum"]}
    if v.get("init", "default") != "default":
        spec["init"] = v["init"]
    if v.get("init") == "mup":
        spec["mup"] = pick(v["mup"], ["base_width", "init_std", "output_mult"])
    return json.dumps(spec, sort_keys=True)


def variants(dataset):
    """The intervention variants of a data set's language models (config lm.<dataset>.variants)."""
    return list(config["lm"][dataset].get("variants") or {})


def variant_runs(dataset):
    """``(variant, size, seed)`` of every variant run of a data set."""
    return [(v, size, seed) for v in variants(dataset) for size, seed in lm_runs(dataset)]


def variant_dir(dataset, variant, size, seed):
    return f"results/variants/{dataset}/{variant}/{size}/seed{seed}"


# log_every changes no number: it reaches the jobs through the environment, not their params, so an
# edit reruns nothing (spectral_reach.cadence)
os.environ[cadence.ENV] = cadence.cadence_env(config)

#: LNP per layer (config key lnp_groups): language-model runs also write lnp_groups.parquet.
LNP_GROUPS = bool(config.get("lnp_groups", False))


def training_resource(r, name, attempt):
    """Resource ``name`` of a training job whose config resources are ``r``; ``runtime`` grows with
    the attempt. A job with ``runs_per_gpu: k > 1`` shares its GPU with k - 1 others: it takes
    ``100 / k`` of ``gpu_share`` (a workstation runs as many as fit ``--resources gpu_share=100``
    per GPU), and for SLURM it asks for the string ``gres: gpu:1`` instead of ``gpu: 1``, which a
    group job of k packed runs (group ``gpu_pack<k>``, see profiles/slurm) asks for once, while
    memory adds up; its CPUs are a k-th of the GPU's. ``None`` leaves the resource out."""
    k = r["runs_per_gpu"]
    values = {
        "gpu": r["gpu"] if k == 1 else None,
        "gres": f"gpu:{r['gpu']}" if k > 1 else None,
        "gpu_share": 100 * r["gpu"] // k,
        "cpus_per_gpu": max(1, r["cpus_per_gpu"] // k),
        "runtime": r["runtime"] * attempt,
    }
    return values[name] if name in values else r[name]


def pack_group(r):
    """The job group of packed runs: ``gpu_pack<k>`` for ``runs_per_gpu: k > 1``, else none."""
    k = r["runs_per_gpu"]
    return f"gpu_pack{k}" if k > 1 else None


#: What a CPU job asks of the scheduler where its config section sets no ``resources`` (the
#: profiles' defaults: 4 GB, 30 minutes).
DEFAULT_RESOURCES = {"mem_mb": 4000, "runtime": 30}


def section_resource(section, name):
    """The rule-resource callable for ``name`` (``mem_mb``, ``runtime``) of a CPU job whose config
    ``section`` may set ``resources`` (checks.hutchinson, checks.entk, rfm: the paper study's need
    more than the defaults); ``runtime`` grows with the attempt."""
    value = {**DEFAULT_RESOURCES, **(section.get("resources") or {})}[name]
    return lambda w, attempt: value * attempt if name == "runtime" else value


def lm_resource(name):
    """The rule-resource callable for ``name`` of a language-model or probe job."""
    return lambda w, attempt: training_resource(lm_resources(w.dataset, w.size), name, attempt)


def vit_runs():
    """``(parametrization, size, seed)`` of every ViT run."""
    return [(p, s, seed) for p in PARAMETRIZATIONS for s in VIT[p]["sizes"] for seed in VIT["seeds"]] if VIT else []


def vit_run_dir(par, size, seed):
    return f"results/vit/{par}/{size}/seed{seed}"


def vit_spec(par, size, seed):
    """Everything one ViT run depends on, as sorted JSON."""
    row = VIT[par]["sizes"][size]
    mup = {k: VIT["mup"][k] for k in ("base_width", "init_std", "output_mult")} if par == "mup" else None
    spec = {
        "size": {k: row[k] for k in ("hidden", "mlp", "heads", "layers", "patch")},
        "lr": row["lr"],
        "seed": int(seed),
        "parametrization": par,
        "mup": mup,
        "betas": VIT["optimizer"]["betas"],
        "eps": VIT["optimizer"]["eps"],
        "weight_decay": VIT["optimizer"]["weight_decay"],
        **pick(
            VIT,
            [
                "batch_size",
                "passes",
                "steps",
                "warmup",
                "schedule",
                "data_seed",
                "lnp",
                "eval",
                "checkpoint_every",
                "device",
                "precision",
                "compile",
            ],
        ),
    }
    return json.dumps(spec, sort_keys=True)


def vit_resource(name):
    """The rule-resource callable for ``name`` of a ViT job."""
    return lambda w, attempt: training_resource(vit_resources(w.par, w.vsize), name, attempt)


def forecast_jobs():
    """``{(rule, group, size): job}``: one entry per kind of job the study runs, with how many jobs
    share it and the runtime (minutes, first attempt) each requests. Training kinds (group: the data
    set, ``<data set>.<variant>`` or the parametrization) carry the first seed's spec and how many
    share a GPU; CPU kinds (spectral_reach.forecast_cpu) their config section."""
    jobs = {}
    for d in LM_DATASETS:
        c = config["lm"][d]
        probes = 2 * len([seed for seed in c["seeds"] if seed in config["probe"]["seeds"]])
        for size in c["sizes"]:
            r = lm_resources(d, size)
            base = {"runs_per_gpu": r["runs_per_gpu"], "runtime_min": r["runtime"]}
            jobs["lm_train", d, size] = {**base, "count": len(c["seeds"]), "spec": lm_spec(d, size, c["seeds"][0])}
            if probes:
                spec = lm_spec(d, size, c["seeds"][0], trainable="head")
                jobs["probe_train", d, size] = {**base, "count": probes, "spec": spec}
            for v in variants(d):
                spec = lm_spec(d, size, c["seeds"][0], variant=v)
                jobs["variant_train", f"{d}.{v}", size] = {**base, "count": len(c["seeds"]), "spec": spec}
    for p, s, seed in vit_runs():
        if seed == VIT["seeds"][0]:
            r = vit_resources(p, s)
            jobs["vit_train", p, s] = {
                "count": len(VIT["seeds"]),
                "runs_per_gpu": r["runs_per_gpu"],
                "runtime_min": r["runtime"],
                "spec": vit_spec(p, s, seed),
            }
    return {**jobs, **cpu_forecast_jobs()}


#: The config section under ``checks`` of each check rule.
CHECK_SECTIONS = {"hutchinson_cv": "hutchinson", "entk_spectrum": "entk"}


def cpu_section(rule):
    """The config section of a CPU kind of job (its settings and resources)."""
    return RFM if rule == "rfm_lnp" else config["checks"][CHECK_SECTIONS[rule]]


def cpu_forecast_jobs():
    """The CPU kinds of :func:`forecast_jobs`: the two checks (on their run's model) and one RFM job per alpha."""
    jobs = {}
    for rule, name in CHECK_SECTIONS.items():
        c, run = cpu_section(rule), check_run(name)
        jobs[rule, run["dataset"], run["size"]] = {
            "count": 1,
            "runtime_min": section_resource(c, "runtime")(None, 1),
            "settings": {k: v for k, v in c.items() if k != "resources"},
            "spec": lm_spec(**run),
        }
    if RFM:
        jobs["rfm_lnp", "rfm", "alpha"] = {
            "count": len(ALPHAS),
            "runtime_min": section_resource(RFM, "runtime")(None, 1),
            "settings": rfm_params(),
        }
    return jobs


def forecast_job(w):
    """One job kind's entry for ``spectral-reach forecast-job``, as sorted JSON."""
    job = forecast_jobs()[w.kind, w.group, w.size]
    row = {"rule": w.kind, "group": w.group, "size": w.size, **job}
    if "spec" in job:
        row["spec"] = json.loads(job["spec"])
    return json.dumps(row, sort_keys=True)


def intervention_dirs(dataset):
    """The base runs' folders, then each variant's, in the order of :func:`intervention_keys`."""
    return [lm_run_dir(dataset, *run) for run in lm_runs(dataset)] + [
        variant_dir(dataset, *run) for run in variant_runs(dataset)
    ]


def intervention_keys(dataset):
    runs = [("base", s, seed) for s, seed in lm_runs(dataset)] + variant_runs(dataset)
    return json.dumps([{"variant": v, "size": s, "seed": int(seed)} for v, s, seed in runs])


def intervention_datasets():
    """The data sets whose language models have variants."""
    return [d for d in LM_DATASETS if variants(d)]


def fig13_dataset():
    """The data set Fig. 13 draws: figures.fig13.dataset, else the first with variants."""
    return config["figures"]["fig13"].get("dataset") or intervention_datasets()[0]


def fig13_size():
    """The size Fig. 13's single-size panels draw: figures.fig13.size, else the data set's last."""
    return config["figures"]["fig13"].get("size") or list(config["lm"][fig13_dataset()]["sizes"])[-1]

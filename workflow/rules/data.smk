# Data preparation (paper App. B.2.1-B.2.3): every source ends in the same memmaps under
# results/data/{dataset}/ (train, validation, test .bin + .json sidecars), so training rules
# are blind to where the data came from.


# Every prepared file against its sidecar (size, sha256), before any training job reads it:
# a file corrupted or edited in place fails here, naming it, and the training jobs it would
# rerun never start, so Snakemake never deletes their finished outputs. Once per data set,
# so it hashes every file whatever its size (data_checks.checksum_max_mb is for the jobs).
rule data_verify:
    input:
        lambda w: prepared_files(w.dataset),
    output:
        verified("{dataset}"),
    log:
        "logs/data_verify/{dataset}.log",
    benchmark:
        "logs/benchmarks/data_verify/{dataset}.tsv"
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        settings=lambda w: json.dumps(config["data"][w.dataset], sort_keys=True),
    shell:
        logged(
            "spectral-reach data-verify --files {input} --dataset {wildcards.dataset} --settings {params.settings:q}"
            " --out {output}"
        )


# Downloads run on the host that runs Snakemake (on a cluster: the submit host), since compute nodes
# often have no internet; they fetch once, into results/data/, and the cluster jobs read from there.
localrules:
    data_verify,
    stories_download,
    cifar5m_download,


rule stories_generate:
    input:
        settings=params_file("stories_generate"),
    output:
        train="results/data/{dataset}/generated/train.parquet",
        test="results/data/{dataset}/generated/test.parquet",
    log:
        "logs/stories_generate/{dataset}.log",
    benchmark:
        "logs/benchmarks/stories_generate/{dataset}.tsv"
    wildcard_constraints:
        dataset=constraint(datasets_with("text", "generate")),
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        gen=lambda w: pick(
            source(w.dataset)["generate"],
            ["train_stories", "test_stories", "seed", "lexicon", "topics", "topic_words", "zipf", "sentences"],
        ),
    shell:
        logged(
            "spectral-reach stories-generate --out-train {output.train} --out-test {output.test}"
            " --train-stories {params.gen[train_stories]} --test-stories {params.gen[test_stories]}"
            " --seed {params.gen[seed]} --lexicon {params.gen[lexicon]} --topics {params.gen[topics]}"
            " --topic-words {params.gen[topic_words]} --zipf {params.gen[zipf]}"
            " --sentences {params.gen[sentences][0]} {params.gen[sentences][1]}"
        )


rule stories_download:
    input:
        settings=params_file("stories_download"),
    output:
        "results/data/{dataset}/hub/{split}.parquet",
    log:
        "logs/stories_download/{dataset}_{split}.log",
    benchmark:
        "logs/benchmarks/stories_download/{dataset}_{split}.tsv"
    wildcard_constraints:
        dataset=constraint(datasets_with("text", "hub")),
        split="train|test",
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        hub_id=lambda w: source(w.dataset)["hub"],
        column=lambda w: config["data"][w.dataset]["column"],
    shell:
        logged(
            "spectral-reach stories-download --hub-id {params.hub_id} --split {wildcards.split}"
            " --column {params.column} --out {output}"
        )


rule tokenizer_train:
    input:
        stories=lambda w: story_files(w.dataset, "train"),
        settings=params_file("tokenizer_train"),
    output:
        "results/data/{dataset}/tokenizer.json",
    log:
        "logs/tokenizer_train/{dataset}.log",
    benchmark:
        "logs/benchmarks/tokenizer_train/{dataset}.tsv"
    wildcard_constraints:
        dataset=constraint([d for d in datasets_with("text") if config["data"][d]["tokenizer"] is None]),
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        column=lambda w: config["data"][w.dataset]["column"],
        vocab_size=lambda w: config["data"][w.dataset]["vocab_size"],
    shell:
        logged(
            "spectral-reach tokenizer-train --stories {input.stories} --column {params.column}"
            " --vocab-size {params.vocab_size} --out {output}"
        )


rule stories_tokenize:
    input:
        train=lambda w: story_files(w.dataset, "train"),
        test=lambda w: story_files(w.dataset, "test"),
        tokenizer=lambda w: tokenizer_file(w.dataset),
        settings=params_file("stories_tokenize"),
    output:
        multiext("results/data/{dataset}/train", ".bin", ".json"),
        multiext("results/data/{dataset}/validation", ".bin", ".json"),
        multiext("results/data/{dataset}/test", ".bin", ".json"),
    log:
        "logs/stories_tokenize/{dataset}.log",
    benchmark:
        "logs/benchmarks/stories_tokenize/{dataset}.tsv"
    wildcard_constraints:
        dataset=constraint(datasets_with("text")),
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        d=lambda w: pick(config["data"][w.dataset], ["column", "vocab_size", "validation_stories"]),
        out_dir="results/data/{dataset}",
    shell:
        logged(
            "spectral-reach stories-tokenize --train {input.train} --test {input.test} --column {params.d[column]}"
            " --tokenizer {input.tokenizer} --vocab-size {params.d[vocab_size]}"
            " --validation-stories {params.d[validation_stories]} --out-dir {params.out_dir}"
        )


rule images_generate:
    input:
        settings=params_file("images_generate"),
    output:
        "results/data/{dataset}/generated/part{part}.npz",
    log:
        "logs/images_generate/{dataset}_part{part}.log",
    benchmark:
        "logs/benchmarks/images_generate/{dataset}_part{part}.tsv"
    wildcard_constraints:
        dataset=constraint(datasets_with("image", "generate")),
        part=r"\d+",
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        gen=lambda w: pick(source(w.dataset)["generate"], ["images_per_part", "seed", "exponent"]),
        background=lambda w: source(w.dataset)["generate"].get("background", 1.0),
    shell:
        logged(
            "spectral-reach images-generate --out {output} --part {wildcards.part} --images-per-part {params.gen[images_per_part]}"
            " --seed {params.gen[seed]} --exponent {params.gen[exponent][0]} {params.gen[exponent][1]}"
            " --background {params.background}"
        )


rule cifar5m_download:
    output:
        "results/data/{dataset}/download/part{part}.npz",
    log:
        "logs/cifar5m_download/{dataset}_part{part}.log",
    benchmark:
        "logs/benchmarks/cifar5m_download/{dataset}_part{part}.tsv"
    wildcard_constraints:
        dataset=constraint(datasets_with("image", "download")),
        part=r"\d+",
    conda:
        "../../envs/spectral-reach.yaml"
    shell:
        logged("spectral-reach cifar5m-download --part {wildcards.part} --out {output}")


rule images_convert:
    input:
        train=lambda w: image_parts(w.dataset, "train_parts"),
        test=lambda w: image_parts(w.dataset, "test_parts"),
        settings=params_file("images_convert"),
    output:
        multiext(
            "results/data/{dataset}/train", ".bin", ".json", "_rgb.bin", "_rgb.json", "_labels.bin", "_labels.json"
        ),
        multiext(
            "results/data/{dataset}/validation",
            ".bin",
            ".json",
            "_rgb.bin",
            "_rgb.json",
            "_labels.bin",
            "_labels.json",
        ),
        multiext("results/data/{dataset}/test", ".bin", ".json", "_rgb.bin", "_rgb.json", "_labels.bin", "_labels.json"),
    log:
        "logs/images_convert/{dataset}.log",
    benchmark:
        "logs/benchmarks/images_convert/{dataset}.tsv"
    wildcard_constraints:
        dataset=constraint(datasets_with("image")),
    conda:
        "../../envs/spectral-reach.yaml"
    params:
        d=lambda w: pick(config["data"][w.dataset], ["validation_images", "chunk"]),
        out_dir="results/data/{dataset}",
    shell:
        logged(
            "spectral-reach images-convert --train {input.train} --test {input.test}"
            " --validation-images {params.d[validation_images]} --chunk {params.d[chunk]}"
            " --out-dir {params.out_dir}"
        )

"""Command line: one subcommand per kind of workflow rule; arguments mirror the rule's params."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pandas as pd

from .data.memmap import atomic_file

log = logging.getLogger("spectral_reach")


def _write(df: pd.DataFrame, path: str) -> None:
    """Write a table by extension (.parquet, .csv or .md), atomically."""
    suffix = Path(path).suffix
    with atomic_file(path) as tmp:
        if suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        elif suffix == ".md":
            tmp.write_text(df.to_markdown(index=False, floatfmt=".4g") + "\n")
        else:
            df.to_csv(tmp, index=False)


def _caption(a: argparse.Namespace, measured: dict) -> None:
    """The figure's report caption: its template rendered with what this run measured."""
    from .figures import caption

    caption.render(a.caption_template, a.caption, measured)
    log.info("measured for the caption: %s", measured)


def rfm_lnp(a: argparse.Namespace) -> None:
    from . import rfm

    log.info("RFM alpha=%g: %d seeds, N=%d, D=%d, P=%d", a.alpha, a.seeds, a.n_samples, a.input_dim, a.width)
    _write(rfm.run([a.alpha], a.n_samples, a.input_dim, a.width, a.seeds, a.first_seed), a.out)


def rfm_theory(a: argparse.Namespace) -> None:
    from . import rfm

    _write(rfm.theory(a.alphas, a.input_dim, a.kernel_samples, a.teacher_draws, a.seed), a.out)


def rfm_summary(a: argparse.Namespace) -> None:
    from . import rfm

    measured = pd.concat([pd.read_parquet(p) for p in a.measured], ignore_index=True)
    table = rfm.deviations(measured, pd.read_csv(a.theory))
    _write(measured, a.out_measured)
    _write(table, a.out_csv)
    _write(table[["alpha", "dev_chi_loss", "dev_chi_net", "dev_chi_pos_kernel", "dev_chi_pos_teacher", "dev_chi_pos_linear",
                  "chi_pos_kernel_within_spread", "kta_identity_max_abs_err"]], a.out_md)
    log.info("deviation table:\n%s", table.to_string())


def fig03(a: argparse.Namespace) -> None:
    from .figures import fig03_rfm

    measured, theory = pd.read_parquet(a.measured), pd.read_csv(a.theory)
    fig03_rfm.plot(measured, theory, a.input_dim, a.pdf, a.png, width=a.width, height=a.height, dpi=a.dpi)
    _caption(a, fig03_rfm.measured(measured, theory))


def stories_generate(a: argparse.Namespace) -> None:
    from .data import synthetic_text

    synthetic_text.generate({"train": a.out_train, "test": a.out_test}, {"train": a.train_stories, "test": a.test_stories},
                            a.seed, a.lexicon, a.topics, a.topic_words, a.zipf, tuple(a.sentences))


def stories_download(a: argparse.Namespace) -> None:
    from .data import text

    log.info("downloading %s [%s]", a.hub_id, a.split)
    log.info("%d stories -> %s", text.download_split(a.hub_id, a.split, a.column, a.out), a.out)


def tokenizer_train(a: argparse.Namespace) -> None:
    from .data import text

    batches = (b for p in a.stories for b in text.read_stories(p, a.column))
    tok = text.train_tokenizer(batches, a.vocab_size, a.out)
    log.info("tokenizer of %d tokens -> %s", tok.get_vocab_size(), a.out)


def stories_tokenize(a: argparse.Namespace) -> None:
    from .data import text

    counts = text.prepare_splits({"train": a.train, "test": a.test}, a.tokenizer, a.vocab_size,
                                 a.validation_stories, a.out_dir, a.column)
    log.info("tokens per split: %s", counts)


def images_generate(a: argparse.Namespace) -> None:
    from .data import synthetic_images

    synthetic_images.generate(a.out, a.part, a.images_per_part, a.seed, tuple(a.exponent), background=a.background)


def cifar5m_download(a: argparse.Namespace) -> None:
    from .data import cifar5m

    cifar5m.download(a.part, a.out)


def images_convert(a: argparse.Namespace) -> None:
    from .data import cifar5m

    for split, parts, start, stop in (("train", a.train, 0, None), ("validation", a.test, 0, a.validation_images),
                                      ("test", a.test, a.validation_images, None)):
        n = cifar5m.convert(parts, a.out_dir, split, a.chunk, start, stop)
        log.info("%s: %d images", split, n)


def train_lm(a: argparse.Namespace) -> None:
    from .train import Preempted, RunSpec, train

    spec = RunSpec.from_dict(json.loads(a.spec))
    try:
        summary = train(spec, a.data_dir, a.out_dir, a.state_dir, a.backbone)
    except Preempted as e:
        log.warning("%s", e)
        raise SystemExit(143) from e
    log.info("done: %s", summary)


def train_vit(a: argparse.Namespace) -> None:
    from .train import Preempted
    from .train.vit import ViTSpec, train_vit

    try:
        summary = train_vit(ViTSpec.from_dict(json.loads(a.spec)), a.data_dir, a.out_dir, a.state_dir)
    except Preempted as e:
        log.warning("%s", e)
        raise SystemExit(143) from e
    log.info("done: %s", summary)


def vit_summary(a: argparse.Namespace) -> None:
    from .analysis import lm

    runs, windows, curves = [], [], []
    for par, size, seed, path in json.loads(a.runs):
        done = json.loads((Path(path) / "done.json").read_text())
        metrics = pd.read_parquet(Path(path) / "metrics.parquet")
        key = {"parametrization": par, "size": size, "seed": seed}
        runs.append({**key, "params": done["params"], "images": done["images"],
                     "final_train_loss": lm.final_train_loss(metrics, a.final_fraction),
                     "final_test_loss": done["final_test_loss"], "train_s": done["train_s"], "lnp_s": done["lnp_s"]})
        windows.append(lm.lnp_windows(pd.read_parquet(Path(path) / "lnp.parquet"), a.raw_steps, "images").assign(**key))
        smooth = max(1, int(len(metrics) * a.final_fraction))
        curves.append(metrics[["step", "images"]].assign(
            loss=metrics["loss"].rolling(smooth, min_periods=1).mean(), **key))
    _write(pd.DataFrame(runs), a.out_runs)
    _write(pd.concat(windows, ignore_index=True), a.out_lnp)
    _write(pd.concat(curves, ignore_index=True), a.out_curves)
    log.info("runs:\n%s", pd.DataFrame(runs).to_string())


def vit_table(a: argparse.Namespace) -> None:
    from .analysis.lm import label_matches, label_params
    from .models.vit import count_parameters

    rows = []
    for par, sizes in json.loads(a.sizes).items():
        for name, size in sizes.items():
            measured, table = count_parameters(size), label_params(name)
            rows.append({"parametrization": par, "size": name,
                         **{k: size[k] for k in ("patch", "hidden", "mlp", "heads", "layers", "lr")},
                         "params": measured, "paper_params": table,
                         "rel_diff": None if table is None else measured / table - 1,
                         "note": "" if table is None or label_matches(name, measured, a.tolerance)
                         else "does not match the paper's count"})
    df = pd.DataFrame(rows)
    _write(df, a.out_csv)
    _write(df, a.out_md)
    log.info("\n%s", df.to_string())


def fig09(a: argparse.Namespace) -> None:
    from .figures import fig09_vit

    runs, windows = pd.read_csv(a.runs), pd.read_parquet(a.lnp)
    fig09_vit.plot(runs, windows, pd.read_parquet(a.metrics), a.pdf, a.png, width=a.width, height=a.height, dpi=a.dpi)
    _caption(a, fig09_vit.measured(runs, windows))


def lm_summary(a: argparse.Namespace) -> None:
    from .analysis import lm

    runs, windows, curves = [], [], []
    for size, seed, path in json.loads(a.runs):
        done = json.loads((Path(path) / "done.json").read_text())
        metrics = pd.read_parquet(Path(path) / "metrics.parquet")
        ev = pd.read_parquet(Path(path) / "eval.parquet")
        runs.append({"size": size, "seed": seed, "params": done["params"], "tokens": done["tokens"],
                     "first_tokens": int(ev["tokens"].iloc[0]), "final_train_loss": lm.final_train_loss(metrics, a.final_fraction),
                     "final_test_loss": done["final_test_loss"], "train_s": done["train_s"], "lnp_s": done["lnp_s"]})
        windows.append(lm.lnp_windows(pd.read_parquet(Path(path) / "lnp.parquet"), a.raw_steps).assign(size=size, seed=seed))
        curves.append(ev.assign(size=size, seed=seed))
    _write(pd.DataFrame(runs), a.out_runs)
    _write(pd.concat(windows, ignore_index=True), a.out_lnp)
    _write(pd.concat(curves, ignore_index=True), a.out_curves)
    log.info("runs:\n%s", pd.DataFrame(runs).to_string())


def lm_table(a: argparse.Namespace) -> None:
    from .analysis.lm import label_matches, label_params
    from .models.llama import count_parameters

    rows = []
    for name, size in json.loads(a.sizes).items():
        measured = count_parameters(size, a.vocab_size)
        table = label_params(name)
        row = {"size": name, "layers": size["layers"], "hidden": size["hidden"], "ff": size["ff"], "heads": size["heads"],
               "head_dim": size.get("head_dim", size["hidden"] // size["heads"]), "tied": size.get("tied", False),
               "lr": size["lr"], "params": measured, "paper_params": table,
               "rel_diff": None if table is None else measured / table - 1, "note": ""}
        if table is not None and not label_matches(name, measured, a.tolerance):
            other = count_parameters({**size, "tied": not row["tied"]}, a.vocab_size)
            if label_matches(name, other, a.tolerance):
                row["note"] = f"matches only with tied={not row['tied']} ({other:,} parameters)"
            else:
                row["note"] = "does not match the paper's count"
        rows.append(row)
    df = pd.DataFrame(rows)
    _write(df, a.out_csv)
    _write(df, a.out_md)
    log.info("\n%s", df.to_string())


def _by_dataset(names: list[str], paths: list[str]) -> dict[str, str]:
    if len(names) != len(paths):
        raise SystemExit(f"{len(names)} data set names for {len(paths)} files")
    return dict(zip(names, paths))


def lm_isocompute(a: argparse.Namespace) -> None:
    from .analysis import lm

    runs = pd.read_csv(a.runs)
    budgets = lm.budgets(runs, a.budgets)
    _write(lm.isocompute(pd.read_parquet(a.curves), runs, budgets, "test_loss"), a.out_loss)
    _write(lm.isocompute(pd.read_parquet(a.lnp), runs, budgets, "chi_pos"), a.out_pos)


def fig01(a: argparse.Namespace) -> None:
    from .figures import fig01_scaling

    data = {n: (pd.read_csv(r), pd.read_parquet(w)) for n, r, w in zip(a.datasets, a.runs, a.lnp)}
    fits = fig01_scaling.plot(data, a.pdf, a.png, width=a.width, height=a.height, dpi=a.dpi)
    _write(fits, a.fits)
    _caption(a, fig01_scaling.measured(data, fits))
    log.info("fits:\n%s", fits.to_string())


def fig07(a: argparse.Namespace) -> None:
    from .figures import fig07_test_loss

    data = {n: pd.read_csv(r) for n, r in _by_dataset(a.datasets, a.runs).items()}
    fits = fig07_test_loss.plot(data, a.pdf, a.png, width=a.width, height=a.height, dpi=a.dpi)
    _write(fits, a.fits)
    _caption(a, fig07_test_loss.measured(data, fits))
    log.info("fits:\n%s", fits.to_string())


def fig08(a: argparse.Namespace) -> None:
    from .figures import fig08_isocompute

    data = {n: (pd.read_csv(lo), pd.read_csv(po)) for n, lo, po in zip(a.datasets, a.loss, a.pos)}
    fig08_isocompute.plot(data, a.pdf, a.png, width=a.width, height=a.height, dpi=a.dpi)
    _caption(a, fig08_isocompute.measured(data))


def fig_components(a: argparse.Namespace) -> None:
    from .figures import fig10_components

    windows, runs = pd.read_parquet(a.lnp), pd.read_csv(a.runs)
    fig10_components.plot(windows, runs, a.title, a.pdf, a.png, width=a.width, height=a.height, dpi=a.dpi)
    _caption(a, fig10_components.measured(windows, runs, a.title))


def probe_summary(a: argparse.Namespace) -> None:
    from .analysis import lm, probe

    params = pd.read_csv(a.lm_runs).groupby("size")["params"].first()
    windows = [tuple(w) for w in json.loads(a.time_windows)]
    ratios, curves = [], []
    for size, seed, path in json.loads(a.runs):
        tables = {b: pd.read_parquet(Path(path) / b / "lnp.parquet") for b in ("pretrained", "random")}
        r = probe.ratio(tables["pretrained"], tables["random"], a.steps, a.top_fraction, windows)
        ratios.append(r.assign(size=size, seed=seed, params=params[size]))
        for b, df in tables.items():
            curves.append(lm.lnp_windows(df, a.raw_steps).assign(size=size, seed=seed, backbone=b))
    out = pd.concat(ratios, ignore_index=True)
    _write(out, a.out_ratios)
    _write(pd.concat(curves, ignore_index=True), a.out_lnp)
    log.info("chi_pos(pretrained) / chi_pos(random):\n%s", out.to_string())


def fig04(a: argparse.Namespace) -> None:
    from .figures import fig04_probe_ratio

    data = {n: pd.read_csv(r) for n, r in _by_dataset(a.datasets, a.ratios).items()}
    fig04_probe_ratio.plot(data, a.pdf, a.png, width=a.width, height=a.height, dpi=a.dpi)
    _caption(a, fig04_probe_ratio.measured(data))


def fig05(a: argparse.Namespace) -> None:
    from .figures import fig05_chi_net

    data = {n: (pd.read_parquet(lm_), pd.read_parquet(pr), pd.read_csv(r)) for n, lm_, pr, r in
            zip(a.datasets, a.lm, a.probe, a.runs)}
    fig05_chi_net.plot(data, a.pdf, a.png, width=a.width, height=a.height, dpi=a.dpi)
    _caption(a, fig05_chi_net.measured(data))


def hutchinson_cv(a: argparse.Namespace) -> None:
    from .checks import hutchinson_cv as hcv
    from .data import Contexts, FixedSet
    from .models import llama

    model = llama.load(a.model)
    batch = FixedSet(Contexts(Path(a.data_dir) / "train.bin", a.context_length), a.samples, "samples").draw(
        a.samples, a.seed, 0)
    values = hcv.draws(model, batch, a.draws, a.per_call, a.seed)
    cv = hcv.cv_by_k(values, a.ks)
    fit = hcv.fit_slope(cv)
    _write(cv.assign(**fit), a.out)
    log.info("CV by K:\n%s\nfit: %s", cv.to_string(), fit)


def entk_spectrum(a: argparse.Namespace) -> None:
    import numpy as np

    from .checks import reduced_entk
    from .data import Contexts, read_memmap
    from .models import llama

    counts = np.bincount(np.asarray(read_memmap(Path(a.data_dir) / "train.bin")), minlength=a.vocab_size)
    vocab = sorted(np.argsort(counts)[::-1][:a.vocab_count].tolist())
    x, y = Contexts(Path(a.data_dir) / "test.bin", a.context_length).get(np.array([a.sample]))
    if max(a.positions) >= x.shape[1]:
        raise SystemExit(f"positions {a.positions}: contexts have {x.shape[1]} predicted tokens")
    models = {"init": llama.build(json.loads(a.size), a.vocab_size, a.context_length, a.seed, attn="eager"),
              "trained": llama.load(a.model, attn="eager")}
    tables, rows = [], []
    for stage, model in models.items():
        spec = reduced_entk.spectrum(model.double(), x, y, a.positions, vocab)
        tables.append(reduced_entk.table(spec, stage))
        rows.append(reduced_entk.summary(spec, stage))
    _write(pd.concat(tables, ignore_index=True), a.out_spectrum)
    _write(pd.DataFrame(rows), a.out_shift)
    log.info("\n%s", pd.DataFrame(rows).to_string())


def fig06(a: argparse.Namespace) -> None:
    from .figures import fig06_hutchinson

    cv, data = pd.read_csv(a.cv), {n: (pd.read_parquet(w), pd.read_csv(r)) for n, w, r in zip(a.datasets, a.lnp, a.runs)}
    fig06_hutchinson.plot(cv, data, a.pdf, a.png, width=a.width, height=a.height, dpi=a.dpi)
    _caption(a, fig06_hutchinson.measured(cv, data))


def fig12(a: argparse.Namespace) -> None:
    from .figures import fig12_entk

    shift = pd.read_csv(a.shift)
    fig12_entk.plot(pd.read_parquet(a.spectrum), shift, a.pdf, a.png, width=a.width, height=a.height, dpi=a.dpi)
    _caption(a, fig12_entk.measured(shift))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="spectral-reach", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("rfm-lnp", help="LNP of random-feature models at initialisation, one alpha")
    p.add_argument("--alpha", type=float, required=True)
    for name in ("n-samples", "input-dim", "width", "seeds", "first-seed"):
        p.add_argument(f"--{name}", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=rfm_lnp)

    p = sub.add_parser("rfm-theory", help="theory curves of the RFM components")
    p.add_argument("--alphas", type=float, nargs="+", required=True)
    for name in ("input-dim", "kernel-samples", "teacher-draws", "seed"):
        p.add_argument(f"--{name}", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=rfm_theory)

    p = sub.add_parser("rfm-summary", help="collect RFM runs; deviation table against theory")
    p.add_argument("--measured", nargs="+", required=True)
    p.add_argument("--theory", required=True)
    p.add_argument("--out-measured", required=True)
    p.add_argument("--out-csv", required=True)
    p.add_argument("--out-md", required=True)
    p.set_defaults(fn=rfm_summary)

    def figure(name: str, fn, help: str, files: tuple[str, ...] = (), lists: tuple[str, ...] = ()) -> argparse.ArgumentParser:
        """A figure command: its input ``files`` (one path each), ``lists`` (one entry per data set), the style, PDF and PNG."""
        p = sub.add_parser(name, help=help)
        for arg in files:
            p.add_argument(f"--{arg}", required=True)
        for arg in lists:
            p.add_argument(f"--{arg}", nargs="+", required=True)
        p.add_argument("--width", type=float, required=True)
        p.add_argument("--height", type=float, required=True)
        p.add_argument("--dpi", type=int, required=True)
        p.add_argument("--pdf", required=True)
        p.add_argument("--png", required=True)
        p.add_argument("--caption-template", required=True, help="workflow/report/<figure>.rst")
        p.add_argument("--caption", required=True, help="the rendered caption the report shows")
        p.set_defaults(fn=fn)
        return p

    figure("fig03", fig03, "Fig. 3: RFM spectra and LNP against theory", files=("measured", "theory")).add_argument(
        "--input-dim", type=int, required=True)

    p = sub.add_parser("stories-generate", help="synthetic story corpus (parquet, SimpleStories columns)")
    p.add_argument("--out-train", required=True)
    p.add_argument("--out-test", required=True)
    for name in ("train-stories", "test-stories", "seed", "lexicon", "topics", "topic-words"):
        p.add_argument(f"--{name}", type=int, required=True)
    p.add_argument("--zipf", type=float, required=True)
    p.add_argument("--sentences", type=int, nargs=2, required=True)
    p.set_defaults(fn=stories_generate)

    p = sub.add_parser("stories-download", help="one split of a Hugging Face story dataset to parquet")
    p.add_argument("--hub-id", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--column", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=stories_download)

    p = sub.add_parser("tokenizer-train", help="train the SimpleStories tokenizer recipe")
    p.add_argument("--stories", nargs="+", required=True)
    p.add_argument("--column", required=True)
    p.add_argument("--vocab-size", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=tokenizer_train)

    p = sub.add_parser("stories-tokenize", help="clean and tokenize stories to uint16 streams")
    p.add_argument("--train", nargs="+", required=True)
    p.add_argument("--test", nargs="+", required=True)
    p.add_argument("--column", required=True)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--vocab-size", type=int, required=True)
    p.add_argument("--validation-stories", type=int, required=True)
    p.add_argument("--out-dir", required=True)
    p.set_defaults(fn=stories_tokenize)

    p = sub.add_parser("images-generate", help="synthetic images as CIFAR-5M parts")
    p.add_argument("--out", required=True)
    p.add_argument("--part", type=int, required=True)
    p.add_argument("--images-per-part", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--exponent", type=float, nargs=2, required=True)
    p.add_argument("--background", type=float, default=1.0, help="amplitude of the random-field background")
    p.set_defaults(fn=images_generate)

    p = sub.add_parser("cifar5m-download", help="one published CIFAR-5M part")
    p.add_argument("--part", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cifar5m_download)

    p = sub.add_parser("images-convert", help="CIFAR-5M parts to grayscale sequences, RGB and labels")
    p.add_argument("--train", nargs="+", required=True)
    p.add_argument("--test", nargs="+", required=True)
    p.add_argument("--validation-images", type=int, required=True)
    p.add_argument("--chunk", type=int, required=True)
    p.add_argument("--out-dir", required=True)
    p.set_defaults(fn=images_convert)

    p = sub.add_parser("train-lm", help="train (or resume) one language model or probe, LNP in the loop")
    p.add_argument("--spec", required=True, help="the run's settings as JSON (RunSpec)")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--backbone", default=None)
    p.set_defaults(fn=train_lm)

    p = sub.add_parser("train-vit", help="train (or resume) one vision transformer, LNP in the loop")
    p.add_argument("--spec", required=True, help="the run's settings as JSON (ViTSpec)")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--state-dir", required=True)
    p.set_defaults(fn=train_vit)

    p = sub.add_parser("vit-summary", help="collect the ViT runs into summary tables")
    p.add_argument("--runs", required=True, help="JSON list of [parametrization, size, seed, run folder]")
    p.add_argument("--final-fraction", type=float, required=True)
    p.add_argument("--raw-steps", type=int, required=True)
    p.add_argument("--out-runs", required=True)
    p.add_argument("--out-curves", required=True)
    p.add_argument("--out-lnp", required=True)
    p.set_defaults(fn=vit_summary)

    p = sub.add_parser("vit-table", help="Tables 3-4: ViT sizes with measured parameter counts")
    p.add_argument("--sizes", required=True, help="JSON {parametrization: {name: size}}")
    p.add_argument("--tolerance", type=float, required=True)
    p.add_argument("--out-md", required=True)
    p.add_argument("--out-csv", required=True)
    p.set_defaults(fn=vit_table)

    p = sub.add_parser("lm-summary", help="collect the runs of one data set into summary tables")
    p.add_argument("--runs", required=True, help="JSON list of [size, seed, run folder]")
    p.add_argument("--final-fraction", type=float, required=True)
    p.add_argument("--raw-steps", type=int, required=True)
    p.add_argument("--out-runs", required=True)
    p.add_argument("--out-lnp", required=True)
    p.add_argument("--out-curves", required=True)
    p.set_defaults(fn=lm_summary)

    p = sub.add_parser("lm-table", help="Tables 1-2: sizes with measured parameter counts")
    p.add_argument("--sizes", required=True, help="JSON {name: size}")
    p.add_argument("--vocab-size", type=int, required=True)
    p.add_argument("--tolerance", type=float, required=True)
    p.add_argument("--out-md", required=True)
    p.add_argument("--out-csv", required=True)
    p.set_defaults(fn=lm_table)

    p = sub.add_parser("lm-isocompute", help="test loss and chi_pos at fixed compute budgets C = 6 N D")
    p.add_argument("--runs", required=True)
    p.add_argument("--curves", required=True)
    p.add_argument("--lnp", required=True)
    p.add_argument("--budgets", type=int, required=True)
    p.add_argument("--out-loss", required=True)
    p.add_argument("--out-pos", required=True)
    p.set_defaults(fn=lm_isocompute)

    figure("fig01", fig01, "Fig. 1: loss scaling and chi_pos dynamics", files=("fits",),
           lists=("datasets", "runs", "lnp"))
    figure("fig07", fig07, "Fig. 7: test-loss scaling", files=("fits",), lists=("datasets", "runs"))
    figure("fig08", fig08, "Fig. 8: isocompute curves", lists=("datasets", "loss", "pos"))
    figure("fig09", fig09, "Fig. 9: ViT training loss and chi_pos, standard and muP", files=("runs", "lnp", "metrics"))
    figure("fig-components", fig_components, "Figs. 10-11: all LNP components of one data set",
           files=("lnp", "runs", "title"))

    p = sub.add_parser("probe-summary", help="Eq. 12 ratios and LNP windows of the probes of one data set")
    p.add_argument("--runs", required=True, help="JSON list of [size, seed, folder holding pretrained/ and random/]")
    p.add_argument("--lm-runs", required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--top-fraction", type=float, required=True)
    p.add_argument("--time-windows", required=True, help="JSON list of [t0, t1]")
    p.add_argument("--raw-steps", type=int, required=True)
    p.add_argument("--out-ratios", required=True)
    p.add_argument("--out-lnp", required=True)
    p.set_defaults(fn=probe_summary)
    figure("fig04", fig04, "Fig. 4: chi_pos ratio of probes, pretrained over random", lists=("datasets", "ratios"))
    figure("fig05", fig05, "Fig. 5: chi_net of full training and of probes", lists=("datasets", "lm", "probe", "runs"))

    p = sub.add_parser("hutchinson-cv", help="Fig. 6: CV of the Hutchinson estimate vs K on a trained model")
    p.add_argument("--model", required=True)
    p.add_argument("--data-dir", required=True)
    for name in ("context-length", "samples", "draws", "per-call", "seed"):
        p.add_argument(f"--{name}", type=int, required=True)
    p.add_argument("--ks", type=int, nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=hutchinson_cv)

    p = sub.add_parser("entk-spectrum", help="Fig. 12: explicit eNTK of a reduced output space, init vs trained")
    p.add_argument("--model", required=True)
    p.add_argument("--size", required=True, help="JSON size of the model, to rebuild its initialisation")
    p.add_argument("--data-dir", required=True)
    for name in ("context-length", "vocab-size", "seed", "sample", "vocab-count"):
        p.add_argument(f"--{name}", type=int, required=True)
    p.add_argument("--positions", type=int, nargs="+", required=True)
    p.add_argument("--out-spectrum", required=True)
    p.add_argument("--out-shift", required=True)
    p.set_defaults(fn=entk_spectrum)
    figure("fig06", fig06, "Fig. 6: Hutchinson convergence and chi_pos of all seeds", files=("cv",),
           lists=("datasets", "lnp", "runs"))
    figure("fig12", fig12, "Fig. 12: eNTK spectra of a reduced output space", files=("spectrum", "shift"))

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args.fn(args)


if __name__ == "__main__":
    main()

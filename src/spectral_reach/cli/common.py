"""What the stage modules share: the figure-command arguments, captions, training exits."""

from __future__ import annotations

import argparse
import logging
from typing import Callable

log = logging.getLogger("spectral_reach")

Command = Callable[[argparse.Namespace], None]
CHECKSUM_MB = {
    "type": float,
    "default": float("inf"),
    "help": "hash data files up to this many MiB against their sidecars before training (default: all)",
}


def command(sub, name: str, fn: Command, help: str, **args: dict) -> argparse.ArgumentParser:
    """A subcommand calling ``fn``; ``args`` maps each ``--flag`` to its ``add_argument`` keywords
    (``required=True`` unless they say otherwise)."""
    p = sub.add_parser(name, help=help)
    for flag, kw in args.items():
        p.add_argument(f"--{flag.replace('_', '-')}", **{"required": "default" not in kw, **kw})
    p.set_defaults(fn=fn)
    return p


def figure(
    sub, name: str, fn: Command, help: str, files: tuple[str, ...] = (), lists: tuple[str, ...] = (), **args: dict
) -> argparse.ArgumentParser:
    """A figure command: input ``files`` (one path each), ``lists`` (one entry per data set), the
    style, the PDF and PNG, and the report caption's template and rendered file."""
    return command(
        sub,
        name,
        fn,
        help,
        **{f: {} for f in files},
        **{f: {"nargs": "+"} for f in lists},
        **args,
        width={"type": float},
        height={"type": float},
        dpi={"type": int},
        pdf={},
        png={},
        caption_template={"help": "workflow/report/<figure>.rst"},
        caption={"help": "the rendered caption the report shows"},
    )


def summary(sub, name: str, help: str, tables: tuple[str, ...], unit: str, curves: str, fits: bool = False) -> None:
    """A summary command: each run's ``tables`` (:func:`run_files`) into the runs, LNP-window and
    loss-curve tables of :func:`..analysis.runs.summarise` (``unit``: tokens or images); with
    ``fits``, also the power-law fits of the final losses (:func:`..analysis.lm.loss_fits`)."""

    def fn(a: argparse.Namespace) -> None:
        from ..analysis.runs import RunFiles, summarise
        from ..io import write_table

        runs = [RunFiles(key, **files) for key, files in run_files(a, tables)]
        table, windows, loss_curves = summarise(runs, a.final_fraction, a.raw_steps, unit, curves)
        write_table(table, a.out_runs)
        write_table(windows, a.out_lnp)
        write_table(loss_curves, a.out_curves)
        log.info("runs:\n%s", table.to_string())
        if fits:
            from ..analysis.lm import loss_fits

            fitted = loss_fits(table, a.fit_max_rel_error)
            write_table(fitted, a.out_fits)
            log.info("fits:\n%s", fitted.to_string())

    command(
        sub,
        name,
        fn,
        help,
        **run_file_args(tables),
        final_fraction={"type": float},
        raw_steps={"type": int},
        out_runs={},
        out_lnp={},
        out_curves={},
        **({"fit_max_rel_error": {"type": float}, "out_fits": {}} if fits else {}),
    )


def run_files(a: argparse.Namespace, tables: tuple[str, ...]) -> list[tuple[dict, dict[str, str]]]:
    """``(key, {table: file})`` of every run a summary reads: ``--keys`` (a JSON list naming each
    run) and, per name in ``tables``, one ``--<name>`` file per run in the same order."""
    import json

    keys = json.loads(a.keys)
    for name in tables:
        if len(getattr(a, name)) != len(keys):
            raise SystemExit(f"--{name}: {len(getattr(a, name))} files for {len(keys)} runs in --keys")
    return [(key, {name: getattr(a, name)[i] for name in tables}) for i, key in enumerate(keys)]


def run_file_args(tables: tuple[str, ...]) -> dict:
    """The flags :func:`run_files` reads."""
    return {"keys": {"help": "JSON list of the columns naming each run"}, **{t: {"nargs": "+"} for t in tables}}


def style(a: argparse.Namespace) -> dict:
    return {"width": a.width, "height": a.height, "dpi": a.dpi}


def caption(a: argparse.Namespace, values: dict) -> None:
    """The figure's report caption: its template rendered with the values this run measured."""
    from ..figures import caption as captions

    captions.render(a.caption_template, a.caption, values)
    log.info("values for the caption: %s", values)


def by_dataset(names: list[str], paths: list[str]) -> dict[str, str]:
    if len(names) != len(paths):
        raise SystemExit(f"{len(names)} data set names for {len(paths)} files")
    return dict(zip(names, paths))


def run_spec(kind: type, a: argparse.Namespace):
    """A training command's settings: ``--spec`` (the rule's params) with the run's ``log_every`` and
    ``tracking``, which reach it outside its params (:mod:`..cadence`) unless the spec names them."""
    import json

    from ..cadence import log_every, tracking

    return kind.from_dict({"log_every": log_every(a.out_dir), "tracking": tracking(), **json.loads(a.spec)})


def preemptible(train: Callable[[], dict]) -> None:
    """Run a training job; a preemption (SIGTERM, checkpoint written) exits 143 for the retry."""
    from ..train import Preempted

    try:
        summary = train()
    except Preempted as e:
        log.warning("%s", e)
        raise SystemExit(143) from e
    log.info("done: %s", summary)

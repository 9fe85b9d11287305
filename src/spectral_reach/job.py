"""One workflow job's command, logged: ``spectral-reach-job LOG -- COMMAND ...``.

Every rule runs its command through this (``logged`` in workflow/rules/common.smk):

* each attempt's output is appended to ``LOG.attempts``, headed by the time and host and closed by
  its exit status, so a retried or resumed job keeps every attempt;
* ``LOG`` gets this attempt's output, which the profiles' ``show-failed-logs`` prints on the console
  when the job fails. A project error (:mod:`spectral_reach.errors`) shows as its message alone:
  its traceback stays in ``LOG.attempts``;
* a project error fails the same way on every attempt, so it leaves ``LOG.permanent``: a retry in
  the same Snakemake run (the profiles' ``retries``) fails at once with that message instead of
  running again. The workflow's ``onstart`` removes these marks, so the next Snakemake run tries;
* SIGTERM and SIGINT (Snakemake stopping, SLURM's time limit) are passed to the command, whose own
  handling (a training job checkpoints) decides when it ends; ``LOG`` is written either way. The
  command gets SIGTERM if this process is killed outright.

Imports nothing heavy: it starts before every job.
"""

from __future__ import annotations

import ctypes
import datetime
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from .errors import EXIT_PROJECT_ERROR, IN_JOB, TRACEBACK_END, TRACEBACK_START

NOT_AGAIN = (
    "=== not run again: this error fails the same way on every attempt; fix what it says, then run Snakemake again"
)


def paths(log: str | os.PathLike) -> tuple[Path, Path, Path]:
    """``(LOG, LOG.attempts, LOG.permanent)``."""
    log = Path(log)
    return log, log.with_name(log.name + ".attempts"), log.with_name(log.name + ".permanent")


def shown(output: str, attempts: Path) -> str:
    """An attempt's output as ``LOG`` shows it: each traceback block of a project error replaced by
    one line that says where it is kept."""
    lines, inside = [], False
    for line in output.splitlines(keepends=True):
        if line.rstrip("\n") == TRACEBACK_START:
            inside = True
            lines.append(f"(traceback kept in {attempts})\n")
        elif line.rstrip("\n") == TRACEBACK_END and inside:
            inside = False
        elif not inside:
            lines.append(line)
    return "".join(lines)


def _die_with_parent() -> None:
    """In the child: SIGTERM when this wrapper dies (Linux ``PR_SET_PDEATHSIG``), so that a killed
    job never leaves its command running."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the command outlives a killed wrapper, as without it
        pass


def run(log: str | os.PathLike, command: list[str]) -> int:
    """Run ``command`` as described above; returns its exit status."""
    log, attempts, mark = paths(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(attempts, "ab") as out:
        out.write(f"=== attempt at {stamp} on {socket.gethostname()}\n".encode())
        start = out.tell()
        if mark.exists():
            out.write(f"{NOT_AGAIN}\n=== exit {EXIT_PROJECT_ERROR}\n".encode())
            log.write_text(mark.read_text() + NOT_AGAIN + "\n")
            return EXIT_PROJECT_ERROR
        out.flush()
        child = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, IN_JOB: "1"}, preexec_fn=_die_with_parent
        )
        forward = lambda sig, _frame: child.send_signal(sig)  # noqa: E731
        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            status = child.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    status = status if status >= 0 else 128 - status  # killed by a signal: the shell's convention
    with open(attempts, "rb") as f:
        f.seek(start)
        text = shown(f.read().decode(errors="replace"), attempts)
    log.write_text(text)
    with open(attempts, "a") as f:
        f.write(f"=== exit {status}\n")
    if status == EXIT_PROJECT_ERROR:
        mark.write_text(text)
    return status


def clear_marks(logs: str | os.PathLike = "logs") -> list[Path]:
    """Remove every ``LOG.permanent`` under ``logs`` (Snakemake's ``onstart``): a new run tries
    every job again, whatever failed before. Returns what it removed."""
    marks = sorted(Path(logs).rglob("*.permanent")) if Path(logs).is_dir() else []
    for m in marks:
        m.unlink()
    return marks


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3 or args[1] != "--":
        raise SystemExit("usage: spectral-reach-job LOG -- COMMAND [ARGS ...]")
    raise SystemExit(run(args[0], args[2:]))


if __name__ == "__main__":
    main()

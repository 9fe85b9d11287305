"""spectral-reach-job, the wrapper of every workflow command: its logs, one-line project errors,
no second attempt at an error that fails on every attempt, and signals passed on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from spectral_reach.errors import EXIT_PROJECT_ERROR
from spectral_reach.job import NOT_AGAIN, clear_marks, paths, run

#: A CLI command that fails with the project's DataError (no such prepared file), without torch.
MISSING = [sys.executable, "-m", "spectral_reach.cli", "data-verify", "--files", "missing.bin", "--dataset", "x"]
MISSING += ["--settings", "{}", "--out", "v.json"]


def attempts(log: Path) -> list[str]:
    return paths(log)[1].read_text().split("=== attempt at ")[1:]


def test_a_project_error_shows_as_one_line_and_is_not_tried_again(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    log, _, mark = paths("logs/x.log")
    assert run(log, MISSING) == EXIT_PROJECT_ERROR
    shown = log.read_text()
    assert shown.splitlines() == [
        "(traceback kept in logs/x.log.attempts)",
        "error: DataError: missing.bin: missing data file or its sidecar missing.json; rerun the data rule that "
        "makes it (snakemake <that path>)",
    ]
    first = attempts(log)[0]
    assert "Traceback (most recent call last)" in first and "raise DataError(" in first
    assert first.rstrip().endswith(f"=== exit {EXIT_PROJECT_ERROR}") and mark.read_text() == shown

    counter = tmp_path / "ran"  # a retry in the same Snakemake run: the command is not run again
    assert run(log, ["sh", "-c", f"echo once >> {counter}"]) == EXIT_PROJECT_ERROR
    assert not counter.exists()
    assert log.read_text() == shown + NOT_AGAIN + "\n"
    assert attempts(log)[1].splitlines()[1:] == [NOT_AGAIN, f"=== exit {EXIT_PROJECT_ERROR}"]

    assert clear_marks("logs") == [mark]  # the next Snakemake run (onstart) tries it again
    assert run(log, ["sh", "-c", f"echo once >> {counter}; echo fine"]) == 0
    assert counter.read_text() == "once\n" and log.read_text() == "fine\n"
    assert len(attempts(log)) == 3 and attempts(log)[2].rstrip().endswith("=== exit 0")


def test_other_errors_keep_their_traceback_and_their_retry(tmp_path):
    log, _, mark = paths(tmp_path / "y.log")
    assert run(log, [sys.executable, "-c", "import sys; print('before'); raise KeyError('boom')"]) == 1
    text = log.read_text()
    assert text.startswith("before\n") and "Traceback (most recent call last)" in text and "KeyError: 'boom'" in text
    assert not mark.exists()
    assert run(log, [sys.executable, "-c", "print('again')"]) == 0  # a retry runs the command
    assert log.read_text() == "again\n"


def test_outside_a_job_a_project_error_raises_as_usual(tmp_path):
    """Run by hand (no wrapper), the command shows Python's own traceback and exit status."""
    env = {k: v for k, v in os.environ.items() if k != "SPECTRAL_REACH_JOB"}
    proc = subprocess.run(MISSING, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback (most recent call last)" in proc.stderr
    assert "spectral_reach.errors.DataError: missing.bin" in proc.stderr and "--- traceback ---" not in proc.stderr


def test_sigterm_reaches_the_command_and_the_log_is_written(tmp_path):
    """Snakemake stopping or SLURM's time limit: the command gets SIGTERM, ends by its own handling
    (a training job checkpoints first), and its output still reaches the job's log."""
    log = tmp_path / "z.log"
    script = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: (print('checkpoint written', flush=True), sys.exit(143)))\n"
        "print('started', flush=True)\n"
        "time.sleep(30)\n"
    )
    wrapper = subprocess.Popen(
        [sys.executable, "-m", "spectral_reach.job", str(log), "--", sys.executable, "-c", script]
    )
    for _ in range(200):
        if paths(log)[1].exists() and "started" in paths(log)[1].read_text():
            break
        time.sleep(0.05)
    start = time.monotonic()
    wrapper.send_signal(signal.SIGTERM)
    assert wrapper.wait(timeout=20) == 143
    assert time.monotonic() - start < 5
    assert log.read_text() == "started\ncheckpoint written\n"
    assert attempts(log)[0].rstrip().endswith("=== exit 143")

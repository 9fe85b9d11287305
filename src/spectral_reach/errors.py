"""The project's own errors: a mistake it found in the config or the data, with a message that
names the file or key and the fix.

Such an error fails the same way on every attempt, so a workflow job that raises one is not
retried (:mod:`spectral_reach.job`) and shows on the console as its message alone, its traceback
kept in the job's ``<log>.attempts``. Any other exception (out of memory, a lost node, a bug) keeps
its traceback on screen and is retried as the profile says.
"""


class ProjectError(Exception):
    """Base of the errors this project raises on purpose: no retry can pass them."""


class ConfigError(ProjectError, ValueError):
    """A setting that cannot work (alone, against another, or against the prepared data)."""


class DataError(ProjectError, RuntimeError):
    """A data file is missing, malformed or inconsistent; the message says which and how to fix it."""


#: The exit status of a workflow job that failed with a :class:`ProjectError` (sysexits' EX_CONFIG).
EXIT_PROJECT_ERROR = 78
#: Set by :mod:`spectral_reach.job` for the command it runs: a project error then prints its
#: traceback between these two lines (kept in ``<log>.attempts``, left out of ``<log>``) and its
#: message last, and exits :data:`EXIT_PROJECT_ERROR`.
IN_JOB = "SPECTRAL_REACH_JOB"
TRACEBACK_START, TRACEBACK_END = "--- traceback ---", "--- end of traceback ---"

"""The version of the numbers a run computes, apart from its settings and data.

Bump a version when a code change alters what a training run computes from the same settings and
data (its steps, its measurements): for every run, :data:`RESULT_VERSION` and :data:`PROBE_VERSION`
together (probes read theirs alone, and it stays above, as ``tests/test_run_identity.py`` checks);
for linear probes alone, :data:`PROBE_VERSION`. A checkpoint of the older code is then started
afresh instead of resumed (:mod:`.train.fingerprint`), the workflow's training rules get the
version as a param (so Snakemake reruns every finished run of that kind, however it finished), and
a summary refuses a ``done.json`` of another version (:func:`.analysis.runs.check_current`).
Imports nothing: the workflow reads it while it builds the DAG.

History: 2, every run measures a last window ending at its final step (issue 37). Probes 3, a
pretrained probe's head is drawn fresh: transformers 5 skips initialising weights loaded from a
checkpoint, so until then it started from the backbone's trained head.
"""

RESULT_VERSION = 2
PROBE_VERSION = 3


def result_version(trainable: str) -> int:
    """The version of a run that trains ``trainable`` (``"all"``, or ``"head"`` for a probe)."""
    return PROBE_VERSION if trainable == "head" else RESULT_VERSION

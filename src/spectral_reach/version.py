"""The version of the numbers a run computes, apart from its settings and data.

Bump :data:`RESULT_VERSION` when a code change alters what a training run computes from the same
settings and data (its steps, its measurements): a checkpoint of the older code is then started
afresh instead of resumed (:mod:`.train.fingerprint`), the workflow's training rules get it as a
param (so Snakemake reruns every finished run, however it finished), and a summary refuses a
``done.json`` of another version (:func:`.analysis.runs.check_current`). Imports nothing: the
workflow reads it while it builds the DAG.

History: 2, every run measures a last window ending at its final step (issue 37).
"""

RESULT_VERSION = 2

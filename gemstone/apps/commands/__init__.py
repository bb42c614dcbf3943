"""The `gemstone` commands, one module per group: what each command does once its arguments are parsed.

data.py (make-demo-data, inspect-data), run_pipeline.py (run-pipeline), pipelines.py
(where, runs, lineage, report), models.py (batch-infer, explain, serve, drift), kubeflow.py
(kubeflow compile, schedule) and backbone.py (backbone fetch). Each command takes the parsed
arguments and returns an exit status; a mistake it finds raises
checks.UsageError. They check their arguments before importing TensorFlow or
Beam, so that importing these modules (the parser does) loads neither.
"""
from __future__ import annotations

import sys

OK, NO, USAGE, FAILED, INTERRUPTED = 0, 1, 2, 3, 130


def note(message: str) -> None:
    """Progress for people, on stderr: stdout stays what the command answers."""
    print(message, file=sys.stderr, flush=True)

"""`make bench`: runs every benchmark in turn, each writing bench/results/<name>.json."""
from __future__ import annotations

import os

import gemstone  # noqa: F401 - first: Keras 2 before TensorFlow loads (gemstone/__init__.py)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench import (cli_latency, explain, head_variants, ingestion_throughput, load, model_quality,  # noqa: E402
                   open_set, pipeline_wall_time, shipping, tuner_trials)

import sys  # noqa: E402

# The shipping benchmarks use the model pushed by `make demo` (which `make bench` runs first).
BENCHMARKS = {"pipeline_wall_time": pipeline_wall_time, "ingestion_throughput": ingestion_throughput,
              "shipping": shipping, "model_quality": model_quality, "head_variants": head_variants,
              "open_set": open_set, "explain": explain, "cli_latency": cli_latency, "load": load,
              "tuner_trials": tuner_trials}

if __name__ == "__main__":
    # `python -m bench [NAME ...]` runs the named benchmarks only.
    for name in sys.argv[1:] or list(BENCHMARKS):
        BENCHMARKS[name].run()

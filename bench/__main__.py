"""`make bench`: runs every benchmark in turn, each writing bench/results/<name>.json."""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench import ingestion_throughput, pipeline_wall_time  # noqa: E402

BENCHMARKS = [pipeline_wall_time, ingestion_throughput]

if __name__ == "__main__":
    for benchmark in BENCHMARKS:
        benchmark.run()

"""Ingestion throughput on the real photos: images/s, one worker against every core, side by side.

Two paths that share the same loading code: the standalone `inspect-data`
(a process pool) and the pipeline's ImageExampleGen executor on Beam's
DirectRunner (in-memory, single process vs multi-processing).
"""
from __future__ import annotations

import os
import tempfile
import time

from bench import common
from gemstone import data_report


def _inspect(workers: int) -> dict:
    started = time.perf_counter()
    report = data_report.inspect(str(common.REAL_DATA), workers=workers)
    seconds = time.perf_counter() - started
    return {"path": f"inspect-data, {workers} worker(s)", "images": report["counts"]["files"],
            "seconds": round(seconds, 1), "images_per_s": round(report["counts"]["files"] / seconds, 1)}


def _example_gen(beam_args: list, label: str) -> dict:
    from tfx.types import standard_artifacts, standard_component_specs
    from tfx.utils import proto_utils

    from components.image_example_gen import component, executor

    gen = component.ImageExampleGen(input_base=str(common.REAL_DATA))
    exec_properties = dict(gen.exec_properties)
    for key in (standard_component_specs.INPUT_CONFIG_KEY, standard_component_specs.OUTPUT_CONFIG_KEY):
        if not isinstance(exec_properties[key], str):
            exec_properties[key] = proto_utils.proto_to_json(exec_properties[key])
    examples = standard_artifacts.Examples()
    examples.uri = tempfile.mkdtemp(prefix="bench-examples-")
    started = time.perf_counter()
    executor.Executor(executor.Executor.Context(beam_pipeline_args=beam_args, tmp_dir=tempfile.mkdtemp())).Do(
        {}, {standard_component_specs.EXAMPLES_KEY: [examples]}, exec_properties)
    seconds = time.perf_counter() - started
    return {"path": label, "images": 3512, "seconds": round(seconds, 1), "images_per_s": round(3512 / seconds, 1)}


def run():
    if not common.REAL_DATA.is_dir():
        print(f"ingestion_throughput: skipped, real photos not found at {common.REAL_DATA}")
        return None
    cores = os.cpu_count() or 1
    rows = [_inspect(1), _inspect(cores),
            _example_gen(["--direct_running_mode=in_memory"], "ImageExampleGen, Beam in_memory"),
            _example_gen(["--direct_running_mode=multi_processing", f"--direct_num_workers={cores}"],
                         f"ImageExampleGen, Beam multi_processing x{cores}")]
    for row in rows:
        row["speed_vs_first"] = round(row["images_per_s"] / rows[0]["images_per_s"], 2)
    return common.record("ingestion_throughput", rows,
                         notes=f"{cores} cores. Load, validate, normalise, hash and measure every photo of "
                               f"gemstones-88 (3,512 files); ImageExampleGen also splits and writes TFRecords.")


if __name__ == "__main__":
    run()

"""ImageExampleGen executor: images (class folders or a manifest) in, tf.Examples out, on Beam.

Unlike the stock ExampleGen, which hashes each record into a split on its own,
the split here needs the whole collection: photos of one stone and
near-duplicate photos must land in the same split (or eval accuracy is
inflated), and every class must be represented in every split. So the images
are loaded in parallel, their small metadata (label, perceptual hash, stone id)
is gathered into one list, the split is computed once, and the examples are
partitioned by it.

Every file ends up in `ingestion_report.json` inside the Examples artifact:
accepted with its split, or quarantined with its reason.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List

import apache_beam as beam
from absl import logging
from tfx.components.example_gen import base_example_gen_executor
from tfx.components.example_gen import utils as example_gen_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from gemstone import contract, data_report, ingestion, splits

INGESTION_OPTIONS_KEY = "ingestion_options"
# sha256 of the ingestion code (fingerprint.py): a cache key only, the executor does not read it.
INGESTION_CODE_KEY = "ingestion_code"
REPORT_FILE_NAME = contract.INGESTION_REPORT_FILE


def split_ratios(output_config: example_gen_pb2.Output) -> Dict[str, float]:
    """Reads the output split config's hash buckets as split proportions."""
    configured = output_config.split_config.splits
    if not configured:
        raise ValueError("ImageExampleGen needs output split names (e.g. train/eval/test).")
    total = sum(s.hash_buckets for s in configured)
    return {s.name: s.hash_buckets / total for s in configured}


def _write_report(_, discovery, results, assignment, report_path):
    report = ingestion.build_report(discovery, results, assignment.split_of, assignment.group_of,
                                    assignment.summary())
    data_report.write(report, os.path.dirname(report_path), json_name=os.path.basename(report_path))
    for line in data_report.summary_lines(report):
        logging.info("Ingestion: %s", line)


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """Loads images with `gemstone.ingestion`, splits them group-aware, writes tf.Examples."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        # The base class would call this once per input split; this executor
        # overrides GenerateExamplesByBeam instead because its split needs the
        # whole collection at once.
        raise NotImplementedError("ImageExampleGen splits the collection itself")

    def Do(self, input_dict: Dict[str, List[Any]], output_dict: Dict[str, List[Any]],
           exec_properties: Dict[str, Any]) -> None:
        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        self._report_path = os.path.join(examples.uri, REPORT_FILE_NAME)
        super().Do(input_dict, output_dict, exec_properties)

    def GenerateExamplesByBeam(self, pipeline: beam.Pipeline,
                               exec_properties: Dict[str, Any]) -> Dict[str, beam.pvalue.PCollection]:
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config)
        if len(input_config.splits) != 1:
            raise ValueError("ImageExampleGen takes one input pattern (class folders or one manifest).")
        ratios = split_ratios(output_config)
        split_names = example_gen_utils.generate_output_split_names(input_config, output_config)
        options = ingestion.IngestionOptions.from_json(exec_properties.get(INGESTION_OPTIONS_KEY))

        discovery = ingestion.discover(exec_properties[standard_component_specs.INPUT_BASE_KEY],
                                       input_config.splits[0].pattern)
        logging.info("Found %d images to load under %s.", len(discovery.entries), discovery.root)

        results = (
            pipeline
            | "ListFiles" >> beam.Create(discovery.entries, reshuffle=True)
            | "LoadImages" >> beam.Map(ingestion.load_entry, options, discovery.confining_root)
        )
        accepted = results | "Accepted" >> beam.Filter(lambda r: isinstance(r, ingestion.Ingested))
        assignment = (
            accepted
            | "SplitRecords" >> beam.Map(ingestion.split_record)
            | "Gather" >> beam.combiners.ToList()
            | "AssignSplits" >> beam.Map(
                splits.assign_splits, ratios=ratios,
                max_distance=options.near_duplicate_distance, seed=options.split_seed,
                max_colour_distance=options.near_duplicate_colour_distance)
        )
        assignment_view = beam.pvalue.AsSingleton(assignment)
        report_rows = results | "DropPixels" >> beam.Map(
            lambda r: r.without_pixels() if isinstance(r, ingestion.Ingested) else r)
        _ = (
            pipeline
            | "ReportTrigger" >> beam.Create([None])
            | "WriteReport" >> beam.Map(_write_report, discovery, beam.pvalue.AsList(report_rows),
                                        assignment_view, self._report_path)
        )
        keyed = accepted | "ToExample" >> beam.Map(
            lambda r, a: (a.split_of[r.key], ingestion.to_tf_example(r, a.group_of[r.key])), assignment_view)
        partitions = keyed | "Partition" >> beam.Partition(
            lambda kv, _: split_names.index(kv[0]), len(split_names))
        return {
            name: partitions[i] | f"Examples[{name}]" >> beam.Values()
            for i, name in enumerate(split_names)
        }

"""ImageExampleGen: a file-based ExampleGen for photographs.

It is a `FileBasedExampleGen` (same driver, so TFX fingerprints the input files
for caching and span handling, and the Kubeflow V2 compiler treats it like any
ExampleGen) with an executor that reads images instead of CSV rows. A
fingerprint of the ingestion code (`fingerprint.py`) is one of its exec
properties, so editing that code invalidates cached examples too.
"""
from __future__ import annotations

from typing import Mapping, Optional

from tfx import types
from tfx.components.example_gen import component as example_gen_component
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter

from components.image_example_gen import executor, fingerprint
from gemstone import ingestion

DEFAULT_SPLITS = {"train": 70, "eval": 15, "test": 15}


class ImageExampleGenSpec(standard_component_specs.FileBasedExampleGenSpec):
    """FileBasedExampleGen's parameters plus the ingestion options (JSON) and the ingestion code's fingerprint.

    The fingerprint is not read by the executor: as an exec property it is part
    of TFX's cache key, so cached examples made by other ingestion code are not reused.
    """

    PARAMETERS = {
        **standard_component_specs.FileBasedExampleGenSpec.PARAMETERS,
        executor.INGESTION_OPTIONS_KEY: ExecutionParameter(type=str, optional=True),
        executor.INGESTION_CODE_KEY: ExecutionParameter(type=str),
    }


class ImageExampleGen(example_gen_component.FileBasedExampleGen):
    """Turns a folder of class folders, or a manifest, into train/eval/test tf.Examples.

    Each example carries the encoded image (normalised so TensorFlow decodes
    what a person sees), `label`, `family`, `stone_id`, `group_id` (its
    near-duplicate group), `source_path`, `width`, `height`, `source_format`,
    `sha256`, `phash` and any extra manifest column.

    Example:
      ImageExampleGen(input_base='/data/gems')                     # class folders
      ImageExampleGen(input_base='/data', input_pattern='gems.csv')  # manifest
    """

    SPEC_CLASS = ImageExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self,
        input_base: str,
        input_pattern: str = "*/*",
        splits: Optional[Mapping[str, int]] = None,
        options: Optional[ingestion.IngestionOptions] = None,
    ):
        """Args:
          input_base: the data folder (class folders, or the folder of the manifest).
          input_pattern: `*/*` for class folders, or the manifest's file name.
            It is also what TFX fingerprints to decide whether cached output
            is still valid.
          splits: split name -> relative size (default train 70, eval 15, test 15).
          options: image limits and near-duplicate settings.
        """
        input_config = example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name="images", pattern=input_pattern)])
        output_config = example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
            example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=size)
            for name, size in (splits or DEFAULT_SPLITS).items()
        ]))
        spec = ImageExampleGenSpec(
            input_base=input_base,
            input_config=input_config,
            output_config=output_config,
            output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            ingestion_options=(options or ingestion.IngestionOptions()).to_json(),
            ingestion_code=fingerprint.ingestion_fingerprint(),
            examples=types.Channel(type=standard_artifacts.Examples),
        )
        # Not FileBasedExampleGen.__init__: it builds a FileBasedExampleGenSpec, which has no place for the two
        # parameters above, and BaseComponent takes only a spec of SPEC_CLASS. The class stays a
        # FileBasedExampleGen (its driver; the Kubeflow V2 compiler builds ExampleGens by that type), so the
        # base of FileBasedExampleGen is called with this spec.
        base_beam_component.BaseBeamComponent.__init__(self, spec=spec)

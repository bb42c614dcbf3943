"""The commands about photos: make-demo-data (the synthetic demo collection) and inspect-data."""
from __future__ import annotations

from pathlib import Path

from gemstone.apps import checks
from gemstone.apps.commands import OK
from gemstone.text import plural


def make_demo_data(args) -> int:
    from gemstone import demo_data

    summary = demo_data.make_demo_data(args.output, per_class=args.per_class, seed=args.seed, progress=True)
    print(f"Demo data: {plural(summary.n_images, 'image')} of {plural(summary.n_stones, 'stone')} in "
          f"{plural(len(summary.classes), 'class')}")
    print(f"  class folders: {Path(args.output) / 'images'}")
    print(f"  manifest:      {Path(args.output) / 'manifest.csv'}")
    return OK


def inspect_data(args) -> int:
    source = checks.data_source(args.data)
    checks.output_folder(args.output, "report.json and the HTML page")
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
        print(f"note: {plural(unlabelled, 'photo')} not inside a class folder, so not used: "
              f"{checks.CLASS_FOLDERS_HINT}")
    if not report["counts"]["accepted"]:
        raise checks.UsageError(f"none of the files can be used ({plural(report['counts']['files'], 'file')}; "
                                f"see the reasons above and in {written['json']})")
    return OK

"""`gemstone`: the command line of the gemstone pipeline.

Each sub-command imports what it needs when it runs, so `gemstone --help`
answers without loading TensorFlow.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _make_demo_data(args) -> int:
    from gemstone import demo_data

    summary = demo_data.make_demo_data(args.output, per_class=args.per_class, seed=args.seed, progress=True)
    print(f"Demo data: {summary.n_images} images of {summary.n_stones} stones in {len(summary.classes)} classes")
    print(f"  class folders: {Path(args.output) / 'images'}")
    print(f"  manifest:      {Path(args.output) / 'manifest.csv'}")
    return 0


def _where(args) -> int:
    from gemstone import paths

    serving = paths.serving_dir(args.pipeline_name)
    latest = paths.latest_version_dir(serving)
    print(f"Pipeline '{args.pipeline_name}':")
    print(f"  artifacts:    {paths.pipeline_root(args.pipeline_name)}")
    print(f"  metadata:     {paths.metadata_path(args.pipeline_name)}")
    if latest is None:
        print(f"  pushed model: none yet under {serving} (no model has been blessed)")
        return 1
    print(f"  pushed model: {latest}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gemstone", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("make-demo-data", help="generate the synthetic demo photographs")
    demo.add_argument("output", help="folder to write images/ and manifest.csv into")
    demo.add_argument("--per-class", type=int, default=40, help="images per variety (default 40)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_make_demo_data)

    where = commands.add_parser("where", help="say where a pipeline's outputs are")
    where.add_argument("--pipeline-name", default="gemstone-demo")
    where.set_defaults(func=_where)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

"""The data report, for machines (JSON) and for people (a PNG and an offline HTML page).

Written by ImageExampleGen into its Examples artifact at every pipeline run,
and by `gemstone inspect-data` on its own.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from gemstone import contract, image_stats, ingestion, splits
from gemstone.text import plural

PLOT_NAME = "image_statistics.png"
HTML_NAME = contract.DATA_REPORT_FILE


def inspect(data: str, options: Optional[ingestion.IngestionOptions] = None, progress: bool = False,
            workers: int = 0) -> Dict[str, Any]:
    """Runs the pipeline's ingestion checks and split on DATA without TFX; returns the report."""
    options = options or ingestion.IngestionOptions()
    input_base, pattern = ingestion.default_input_pattern(data)
    discovery = ingestion.discover(input_base, pattern)
    results = list(_load_all(discovery, options, progress, workers))
    accepted = [r for r in results if isinstance(r, ingestion.Ingested)]
    assignment = splits.assign_splits(
        [ingestion.split_record(r) for r in accepted], max_distance=options.near_duplicate_distance,
        seed=options.split_seed, max_colour_distance=options.near_duplicate_colour_distance)
    return ingestion.build_report(discovery, results, assignment.split_of, assignment.group_of, assignment.summary())


def _load_all(discovery: ingestion.Discovery, options, progress: bool, workers: int) -> Iterable:
    from concurrent.futures import ProcessPoolExecutor
    import functools
    import os

    from tqdm import tqdm

    load = functools.partial(ingestion.load_entry, options=options, root=discovery.confining_root)
    workers = workers or os.cpu_count() or 1
    bar = tqdm(total=len(discovery.entries), unit="img", desc="inspecting", disable=not progress)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for result in pool.map(load, discovery.entries, chunksize=16):
            # The encoded pixels are not needed any more: keep memory flat on big collections.
            yield result.without_pixels() if isinstance(result, ingestion.Ingested) else result
            bar.update(1)
    bar.close()


def write(report: Dict[str, Any], out_dir, json_name: str = "report.json") -> Dict[str, Path]:
    """Writes the JSON report, the statistics plot and the HTML page into out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {"json": out / json_name}
    written["json"].write_text(json.dumps(report, indent=1))
    accepted = [f for f in report["files"] if f["status"] == "accepted"]
    plot = image_stats.plot(accepted, out / PLOT_NAME, title=f"Image statistics: {report['data_root']}")
    if plot:
        written["plot"] = Path(plot)
    written["html"] = out / HTML_NAME
    written["html"].write_text(_html(report, written.get("plot")), encoding="utf-8")
    return written


SHOWN_WARNINGS = 10  # of each kind in the terminal and the log; report.json and the page list them all


def warning_lines(report: Dict[str, Any], limit: Optional[int] = SHOWN_WARNINGS) -> List[str]:
    """What would make the splits or the labels mislead: empty splits, classes missing from a split, photos
    labelled as two classes. Reports written before these were checked have none."""
    coverage = report.get("split_coverage") or {}
    lines = []
    empty = coverage.get("empty_splits") or []
    if empty:
        names = ", ".join(report["splits"].get("ratios", {}))
        lines.append(f"warning: no photo in {' or '.join(empty)}: the pipeline needs photos in every split ({names}) "
                     f"to train, choose and test a model; add photos of more stones (photos of one stone, and "
                     f"near-duplicates, go to one split together)")
    missing = list((coverage.get("classes_missing_from_splits") or {}).items())
    for label, splits_missing in missing[:limit]:
        photos = sum(report["per_class"].get(label, {}).values())
        lines.append(f"warning: {label} has no photo in {' or '.join(splits_missing)} ({plural(photos, 'photo')}): "
                     f"a class needs photos of as many different stones as there are splits")
    groups = report.get("cross_class_groups") or []
    for group in groups[:limit]:
        lines.append("warning: one stone in two classes? " + ", ".join(f"{p['path']} ({p['label']})" for p in group)
                     + ": the same stone or near-duplicate photos labelled differently; keep one label")
    hidden = 0 if limit is None else max(0, len(missing) - limit) + max(0, len(groups) - limit)
    if hidden:
        lines.append(f"warning: and {plural(hidden, 'more warning')} in report.json")
    return lines


def summary_lines(report: Dict[str, Any], warnings: bool = True) -> list:
    """What inspect-data prints (and ImageExampleGen logs): the counts, then `warnings` (warning_lines)."""
    counts, balance, split_summary = report["counts"], report["class_balance"], report["splits"]
    lines = [
        f"{plural(counts['files'], 'file')}: {counts['accepted']} accepted, {counts['quarantined']} quarantined, "
        f"{plural(counts['ignored_hidden'], 'hidden file')} ignored",
    ]
    for reason, n in report["quarantine_reasons"].items():
        # The first file's detail says what the reason means here (e.g. "line 2 has no path").
        example = next((f for f in report["files"] if f.get("reason") == reason), None)
        lines.append(f"  quarantined {reason}: {n}" + (f" (e.g. {example['path']}: {example['detail']})"
                                                        if example and example.get("detail") else ""))
    if balance.get("classes"):
        smallest, largest = balance["smallest"][1], balance["largest"][1]
        each = plural(largest, "photo") if smallest == largest else f"{smallest}-{largest} photos"
        lines.append(f"{plural(balance['classes'], 'class')}, {each} each (imbalance {balance['imbalance_ratio']}x); "
                     f"rare: {', '.join(balance['rare_classes']) or 'none'}")
    lines.append(f"splits {split_summary.get('examples_per_split')}; "
                 f"{plural(split_summary.get('near_duplicate_groups', 0), 'near-duplicate/same-stone group')}, "
                 f"{plural(split_summary.get('cross_class_groups', 0), 'group')} spanning classes")
    shifts = report["image_statistics"]["shifts"]
    lines.append(f"{plural(len(shifts), 'class/split image-statistic shift')}" + (":" if shifts else ""))
    lines += [f"  {s['message']}" for s in shifts[:10]]
    return lines + (warning_lines(report) if warnings else [])


def _table(header, rows) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def sections_html(report: Dict[str, Any], plot_png: Optional[bytes]) -> str:
    """The report's body, without page chrome: also embedded in the evaluation dashboard."""
    split_names = list(report["splits"].get("ratios", {"train": 0, "eval": 0, "test": 0}))
    per_class = [[label] + [counts.get(s, 0) for s in split_names] + [sum(counts.values())]
                 for label, counts in report["per_class"].items()]
    quarantined = [[f["path"], f["reason"], f["detail"]] for f in report["files"] if f["status"] == "quarantined"]
    shifts = [[s["label"], s["split"], s["statistic"], s["reference_mean"], s["mean"], s["effect_size"]]
              for s in report["image_statistics"]["shifts"]]
    warnings = "".join(f"<li>{html.escape(line)}</li>" for line in warning_lines(report, limit=None))
    spanning = [[number, photo["path"], photo["label"]]
                for number, group in enumerate(report.get("cross_class_groups") or [], 1) for photo in group]
    image = ""
    if plot_png:
        image = f'<img alt="image statistics" src="data:image/png;base64,{base64.b64encode(plot_png).decode()}">'
    return f"""<p>{html.escape(report['data_root'])} ({html.escape(report['layout'])})</p>
{f'<h3>Warnings</h3><ul class="warnings">{warnings}</ul>' if warnings else ''}
<ul>{''.join(f'<li>{html.escape(line)}</li>' for line in summary_lines(report, warnings=False))}</ul>
<h3>Image statistics</h3>{image}
<h3>Shifts between splits</h3>{_table(['class', 'split', 'statistic', 'train mean', 'mean', 'effect size'], shifts) if shifts else '<p>none</p>'}
<h3>Photos per class</h3>{_table(['class'] + split_names + ['total'], per_class)}
<h3>Photos in more than one class</h3>{_table(['group', 'path', 'class'], spanning) if spanning else '<p>none</p>'}
<h3>Quarantined files</h3>{_table(['path', 'reason', 'detail'], quarantined) if quarantined else '<p>none</p>'}"""


def _html(report: Dict[str, Any], plot: Optional[Path]) -> str:
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Data report</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}img{{max-width:100%}}
.warnings li{{color:#a40}}</style></head><body>
<h1>Data report</h1>{sections_html(report, plot.read_bytes() if plot else None)}
</body></html>"""

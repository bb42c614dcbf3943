"""The slice dashboard's HTML: the figures gemstone/report.py gathers, as one self-contained page.

Charts and photos are embedded (base64), the per-class table sorts with a few
lines of inline JavaScript: the page works offline, as a file.
"""
from __future__ import annotations

import html
import os
from typing import Any, Dict, Optional

from gemstone import contract, data_report, open_set_report
from gemstone.charts import confusion_chart, reliability_chart, robustness_chart
from gemstone.verdict import rejection_reasons


def _number(value, digits=3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _change(value, previous) -> str:
    return "" if value is None or previous is None else f"{value - previous:+.3f}"


def _table(header, rows, table_id="", sortable=False) -> str:
    """rows: lists of cells; a cell is text or (text, sort value)."""
    attributes = f' id="{table_id}"' if table_id else ""
    attributes += ' class="sortable"' if sortable else ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            text, key = cell if isinstance(cell, tuple) else (cell, None)
            key_attribute = f' data-sort="{key}"' if key is not None else ""
            cells.append(f"<td{key_attribute}>{html.escape(str(text))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table{attributes}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _sort_value(value):
    return -1 if value is None else round(value, 6)


SORT_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function (th, column) {
  th.title = 'click to sort';
  th.addEventListener('click', function () {
    var tbody = th.closest('table').tBodies[0];
    var ascending = th.dataset.order !== 'asc';
    th.closest('tr').querySelectorAll('th').forEach(function (o) { delete o.dataset.order; });
    th.dataset.order = ascending ? 'asc' : 'desc';
    var key = function (row) {
      var cell = row.cells[column];
      return cell.dataset.sort !== undefined ? parseFloat(cell.dataset.sort) : cell.textContent.toLowerCase();
    };
    Array.from(tbody.rows).sort(function (a, b) {
      var x = key(a), y = key(b);
      return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
    }).forEach(function (row) { tbody.appendChild(row); });
  });
});
"""

STYLE = """body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}th{background:#eef;cursor:pointer}
th[data-order=asc]::after{content:' \\25B2'}th[data-order=desc]::after{content:' \\25BC'}
.verdict{padding:.6em 1em;font-weight:bold}.blessed{background:#dfd}.rejected{background:#fdd}
img{max-width:100%}.thumbs img{width:96px;height:96px;object-fit:cover;margin:2px}
figure{display:inline-block;margin:4px;font-size:11px;text-align:center}"""


def render(data: Dict[str, Any], data_plot: Optional[bytes] = None) -> str:
    """The page of `data` (gemstone.report.collect); `data_plot`: the data report's image statistics PNG."""
    overall, previous = data["overall"]["candidate"], data["overall"]["baseline"]
    reasons = rejection_reasons(data["validation_failures"], data["robustness_failures"])
    verdict = ('<p class="verdict blessed">Blessed: the model met the accuracy floor, did not regress and passed '
               'the robustness gate.</p>' if data["blessed"] else
               '<p class="verdict rejected">Not blessed: the model will not be pushed. Failed checks:</p><pre>' +
               html.escape("\n".join(reasons) or "(see the Evaluator's and Robustness' logs)") + "</pre>")
    overall_rows = [[name, _number(overall.get(key), digits), _number(previous.get(key), digits),
                     _change(overall.get(key), previous.get(key))]
                    for name, key, digits in (("accuracy", contract.ACCURACY, 3), ("top-3 accuracy", contract.TOP_K_ACCURACY, 3),
                                              ("photos", contract.EXAMPLE_COUNT, 0))]
    per_class = data["per_class"]
    f1s = [r["f1"] for r in per_class if r["f1"] is not None]
    if f1s:
        overall_rows.append(["macro F1", _number(sum(f1s) / len(f1s)), "", ""])
    overall_rows.append(["expected calibration error (top-1)", _number(data["calibration"]["ece"]) + (
        f" (by chance alone, a perfectly calibrated model stays under {data['calibration']['ece_by_chance_p95']:.3f}"
        " 19 times in 20 on these photos)"), "", ""])
    for threshold, trade in sorted(data["review"].items()):
        if threshold > 0:
            overall_rows.append([f"answered without review (confidence >= {threshold:g})",
                                 f"{trade['coverage']:.1%} of photos at accuracy {trade['accuracy']:.3f}", "", ""])

    class_rows = [[r["label"], r["family"], (r["photos"], r["photos"]),
                   (_number(r["accuracy"]), _sort_value(r["accuracy"])),
                   (_number(r["previous_accuracy"]), _sort_value(r["previous_accuracy"])),
                   (_change(r["accuracy"], r["previous_accuracy"]),
                    _sort_value(None if r["accuracy"] is None or r["previous_accuracy"] is None
                                else r["accuracy"] - r["previous_accuracy"])),
                   (_number(r["top_k_accuracy"]), _sort_value(r["top_k_accuracy"])),
                   (_number(r["precision"]), _sort_value(r["precision"])),
                   (_number(r["recall"]), _sort_value(r["recall"])),
                   (_number(r["f1"]), _sort_value(r["f1"])), r["confused_with"]] for r in per_class]

    def slice_table(rows, title):
        return _table([title, "photos", "accuracy", "previous", "change", "top-3 accuracy"],
                      [[r["slice"], r["photos"], _number(r["accuracy"]), _number(r["previous_accuracy"]),
                        _change(r["accuracy"], r["previous_accuracy"]), _number(r["top_k_accuracy"])] for r in rows])

    sections = [
        f"<h1>Evaluation: {html.escape(data['pipeline_name'])}</h1>",
        f"<p>Model <code>{html.escape(data['sources']['model'])}</code>, judged on the "
        f"<b>{html.escape(data['split'])}</b> split; made {html.escape(data['created'])}.</p>", verdict,
        "<h2>Overall, against the previous blessed model</h2>",
        _table(["metric", "this model", "previous blessed", "change"], overall_rows),
        f"<h2>Per class ({len(per_class)} classes)</h2><p>Click a column to sort. Accuracy on a class is its "
        "recall; precision, recall and F1 count the top-1 answer.</p>",
        _table(["class", "family", "photos", "accuracy", "previous", "change", "top-3 accuracy", "precision",
                "recall", "F1", "most confused with"], class_rows, table_id="per-class", sortable=True),
        "<h2>Per mineral family</h2>", slice_table(data["families"], "family"),
        "<h2>Per photo size</h2>", slice_table(data["size_buckets"], "size (short side)"),
        "<h2>Confusion matrix</h2>",
        f'<img alt="confusion matrix" src="data:image/png;base64,{confusion_chart(data["confusion_matrix"], data["classes"])}">',
        "<h2>Worst confusions</h2>",
    ]
    if not data["worst_confusions"]:
        sections.append("<p>No photo of the split was misclassified.</p>")
    for confusion in data["worst_confusions"]:
        thumbs = "".join(
            f'<figure><img alt="{html.escape(t["path"])}" src="data:image/jpeg;base64,{t["jpeg_base64"]}">'
            f'<figcaption>{html.escape(os.path.basename(t["path"]))}<br>{t["confidence"]:.2f}</figcaption></figure>'
            for t in confusion["thumbnails"])
        sections.append(f"<h3>{html.escape(confusion['label'])} taken for {html.escape(confusion['predicted'])}: "
                        f"{confusion['photos']} photo{'s' if confusion['photos'] != 1 else ''}</h3><div class=\"thumbs\">{thumbs}</div>")
    sections += ["<h2>Calibration</h2>",
                 f'<img alt="reliability plot" src="data:image/png;base64,{reliability_chart(data["calibration"])}">']
    sections.append("<h2>Robustness</h2>")
    robustness = data["robustness"]
    if robustness:
        sections.append(f'<img alt="robustness chart" src="data:image/png;base64,{robustness_chart(robustness)}">')
        sections.append(_table(
            ["corruption", "accuracy", "share of clean accuracy", "same answer as clean", "review rate"],
            [["none (clean)", _number(robustness["clean"]["accuracy"]), "100%", "100%",
              f"{robustness['clean']['review_rate']:.0%}"]] +
            [[f"{c['name']}: {c['description']}", _number(c["accuracy"]), f"{c['relative_accuracy']:.0%}",
              f"{c['agreement']:.0%}", f"{c['review_rate']:.0%}"] for c in robustness["corruptions"]]))
    else:
        sections.append("<p>No robustness report for this model.</p>")
    sections.append(open_set_report.section_html(data["open_set"]))
    sections.append("<h2>Data</h2>")
    if data["data_report"]:
        sections.append(data_report.sections_html(data["data_report"], data_plot))
    else:
        sections.append("<p>No data report in the examples artifact.</p>")
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>Evaluation: '
            f'{html.escape(data["pipeline_name"])}</title><style>{STYLE}</style></head><body>'
            + "\n".join(sections) + f"<script>{SORT_SCRIPT}</script></body></html>")

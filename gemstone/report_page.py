"""The slice dashboard's HTML: the figures gemstone/report.py gathers, as one self-contained page.

Charts and photos are embedded (base64), the per-class table sorts with a few
lines of inline JavaScript: the page works offline, as a file.
"""
from __future__ import annotations

import html
import os
from typing import Any, Dict, List, Optional

from gemstone import contract, data_report, open_set_report
from gemstone.charts import confusion_chart, reliability_chart, robustness_chart
from gemstone.verdict import rejection_reasons
from gemstone.text import plural

FIRST_RUN = "First run: nothing to compare with (no model was blessed before this one)."
# A review reason in a few words, for a caption (gemstone/overlay.py's review_line says it in a sentence).
REASON_WORDS = {contract.NOT_A_GEMSTONE: "not a gemstone photo", contract.UNFAMILIAR_VARIETY: "unfamiliar variety",
                contract.LOW_CONFIDENCE: "low confidence"}


def _number(value, digits=3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _change(value, previous) -> str:
    return "" if value is None or previous is None else f"{value - previous:+.3f}"


def _interval(interval) -> str:
    return "" if interval is None else f"{interval[0]:.2f}–{interval[1]:.2f}"


def _table(header, rows, table_id="", sortable=False, sorted_by: Optional[int] = None) -> str:
    """rows: lists of cells; a cell is text or (text, sort value). `sorted_by`: the column the rows are
    already in ascending order of (its header shows the arrow)."""
    attributes = f' id="{table_id}"' if table_id else ""
    attributes += ' class="sortable"' if sortable else ""
    arrow = ' data-order="asc"'
    head = "".join(f"<th{arrow if i == sorted_by else ''}>{html.escape(h)}</th>" for i, h in enumerate(header))
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
img{max-width:100%}.thumbs img{width:96px;height:96px;object-fit:cover;margin:1px}
figure{display:inline-block;margin:4px;font-size:11px;text-align:center;vertical-align:top}
figcaption{max-width:196px;overflow-wrap:anywhere}.note{color:#555}"""


def _header(data: Dict[str, Any]) -> List[str]:
    """The title, which model version this is (the one pushed, or that it was not), and the verdict."""
    pushed = data.get("pushed")
    version = (f"<p>Pushed as version <b>{html.escape(pushed['version'])}</b> "
               f"(<code>{html.escape(pushed['path'])}</code>), judged on the ") if pushed else \
        "<p><b>Not pushed</b>: this model was judged on the "
    reasons = rejection_reasons(data["validation_failures"], data["robustness_failures"])
    verdict = ('<p class="verdict blessed">Blessed: the model met the accuracy floor, did not regress and passed '
               'the robustness gate.</p>' if data["blessed"] else
               '<p class="verdict rejected">Not blessed: the model will not be pushed. Failed checks:</p><pre>' +
               html.escape("\n".join(reasons) or "(see the Evaluator's and Robustness' logs)") + "</pre>")
    return [f"<h1>Evaluation: {html.escape(data['pipeline_name'])}</h1>",
            version + f"<b>{html.escape(data['split'])}</b> split; page made {html.escape(data['created'])}.</p>",
            verdict]


def _overall(data: Dict[str, Any], compared: bool) -> List[str]:
    overall, previous = data["overall"]["candidate"], data["overall"]["baseline"]

    def this_model_only(name, value):  # a figure the previous model is not compared on
        return [name, value] + (["", ""] if compared else [])

    rows = [[name, _number(overall.get(key), digits)] +
            ([_number(previous.get(key), digits), _change(overall.get(key), previous.get(key))] if compared else [])
            for name, key, digits in (("accuracy", contract.ACCURACY, 3), ("top-3 accuracy", contract.TOP_K_ACCURACY, 3),
                                      ("photos", contract.EXAMPLE_COUNT, 0))]
    f1s = [r["f1"] for r in data["per_class"] if r["f1"] is not None]
    if f1s:
        rows.append(this_model_only("macro F1", _number(sum(f1s) / len(f1s))))
    rows.append(this_model_only("expected calibration error (top-1)", _number(data["calibration"]["ece"]) + (
        f" (by chance alone, a perfectly calibrated model stays under {data['calibration']['ece_by_chance_p95']:.3f}"
        " 19 times in 20 on these photos)")))
    for threshold, trade in sorted(data["review"].items()):
        if threshold > 0:
            rows.append(this_model_only(f"answered without review (confidence >= {threshold:g})",
                                        f"{trade['coverage']:.1%} of photos at accuracy {trade['accuracy']:.3f}"))
    if compared:
        return ["<h2>Overall, against the previous blessed model</h2>",
                _table(["metric", "this model", "previous blessed", "change"], rows)]
    return ["<h2>Overall</h2>", f'<p class="note">{FIRST_RUN}</p>', _table(["metric", "this model"], rows)]


def _per_class(per_class: List[Dict[str, Any]], compared: bool) -> List[str]:
    def row(r):
        comparison = [(_number(r["previous_accuracy"]), _sort_value(r["previous_accuracy"])),
                      (_change(r["accuracy"], r["previous_accuracy"]),
                       _sort_value(None if r["accuracy"] is None or r["previous_accuracy"] is None
                                   else r["accuracy"] - r["previous_accuracy"]))] if compared else []
        interval = r["accuracy_interval"]
        return [r["label"], r["family"], (r["photos"], r["photos"]),
                (_number(r["accuracy"]), _sort_value(r["accuracy"])),
                (_interval(interval), _sort_value(interval[0] if interval else None)), *comparison,
                (_number(r["top_k_accuracy"]), _sort_value(r["top_k_accuracy"])),
                (_number(r["precision"]), _sort_value(r["precision"])),
                (_number(r["recall"]), _sort_value(r["recall"])),
                (_number(r["f1"]), _sort_value(r["f1"])), r["confused_with"]]

    header = ["class", "family", "photos", "accuracy", "95% interval", *(["previous", "change"] if compared else []),
              "top-3 accuracy", "precision", "recall", "F1", "most confused with"]
    return [f"<h2>Per class ({plural(len(per_class), 'class')})</h2><p>Worst first: the lowest accuracy at the top. Click a "
            "column to sort. Accuracy on a class is its recall; the 95% interval (Wilson's) is where it may well lie "
            "given how few test photos the class has. Precision, recall and F1 count the top-1 answer.</p>"
            + ("" if compared else f'<p class="note">{FIRST_RUN}</p>'),
            _table(header, [row(r) for r in per_class], table_id="per-class", sortable=True, sorted_by=3)]


def _slice_table(rows: List[Dict[str, Any]], title: str, compared: bool) -> str:
    header = [title, "photos", "accuracy"] + (["previous", "change"] if compared else []) + ["top-3 accuracy"]
    return _table(header, [[r["slice"], r["photos"], _number(r["accuracy"])] +
                           ([_number(r["previous_accuracy"]), _change(r["accuracy"], r["previous_accuracy"])]
                            if compared else []) + [_number(r["top_k_accuracy"])] for r in rows])


def _photo(figure: Dict[str, Any], caption: str) -> str:
    """A photo's thumbnail and, when the model explained it, the same photo with where it looked laid over."""
    images = f'<img alt="{html.escape(figure["path"])}" src="data:image/jpeg;base64,{figure["jpeg_base64"]}">'
    if figure.get("overlay_base64"):
        images += (f'<img alt="where the model looked: {html.escape(figure["path"])}" class="overlay" '
                   f'src="data:image/jpeg;base64,{figure["overlay_base64"]}">')
    if figure.get("map_empty"):
        caption += "<br><i>empty map</i>"
    return f"<figure>{images}<figcaption>{caption}</figcaption></figure>"


def _overlays_note(data: Dict[str, Any]) -> str:
    if data.get("explained"):
        return ('<p class="note">Each photo beside where the model looked for the variety it named (its saliency '
                'map, from the model\'s <code>explain</code> signature: red is where the answer depends most). An '
                '<i>empty map</i>: the method found no part of the photo that raised the named variety\'s score.</p>')
    return ('<p class="note">This model has no <code>explain</code> signature (it was exported before it): '
            'photos without where the model looked.</p>')


def _worst_confusions(data: Dict[str, Any]) -> List[str]:
    parts = ["<h2>Worst confusions</h2>"]
    if not data["worst_confusions"]:
        return parts + ["<p>No photo of the split was misclassified.</p>"]
    parts.append(_overlays_note(data))
    for confusion in data["worst_confusions"]:
        thumbs = "".join(_photo(t, f"{html.escape(os.path.basename(t['path']))}<br>{t['confidence']:.2f}")
                         for t in confusion["thumbnails"])
        parts.append(f"<h3>{html.escape(confusion['label'])} taken for {html.escape(confusion['predicted'])}: "
                     f"{plural(confusion['photos'], 'photo')}</h3>"
                     f'<div class="thumbs">{thumbs}</div>')
    return parts


def _review_gallery(data: Dict[str, Any]) -> List[str]:
    review = data["flagged_for_review"]
    parts = [f'<h2 id="review">Flagged for review ({review["flagged"]} of {review["photos"]} test photos)</h2>']
    if not review["flagged"]:
        return parts + ["<p>No test photo was flagged for review.</p>"]
    shown = review["shown"]
    parts.append(f"<p>The answers a gemmologist is asked to check, by reason, the least confident first"
                 f"{f' (the first {len(shown)})' if len(shown) < review['flagged'] else ''}: file, the variety, "
                 "what the model named and its confidence.</p>")
    parts.append(_overlays_note(data))
    captions = [f"{html.escape(os.path.basename(f['path']))}<br>{html.escape(f['label'])} &rarr; "
                f"{html.escape(str(f['predicted']))} {f['confidence']:.2f}<br>"
                f"<b>{html.escape(REASON_WORDS.get(f['review_reason'], f['review_reason']))}</b>" for f in shown]
    parts.append('<div class="thumbs">' + "".join(_photo(f, c) for f, c in zip(shown, captions)) + "</div>")
    return parts


def _robustness(robustness: Optional[Dict[str, Any]]) -> List[str]:
    parts = ["<h2>Robustness</h2>"]
    if not robustness:
        return parts + ["<p>No robustness report for this model.</p>"]
    return parts + [
        f'<img alt="robustness chart" src="data:image/png;base64,{robustness_chart(robustness)}">',
        _table(["corruption", "accuracy", "share of clean accuracy", "same answer as clean", "review rate"],
               [["none (clean)", _number(robustness["clean"]["accuracy"]), "100%", "100%",
                 f"{robustness['clean']['review_rate']:.0%}"]] +
               [[f"{c['name']}: {c['description']}", _number(c["accuracy"]), f"{c['relative_accuracy']:.0%}",
                 f"{c['agreement']:.0%}", f"{c['review_rate']:.0%}"] for c in robustness["corruptions"]])]


def render(data: Dict[str, Any], data_plot: Optional[bytes] = None) -> str:
    """The page of `data` (gemstone.report.collect); `data_plot`: the data report's image statistics PNG."""
    # The previous blessed model's columns: only when TFMA compared against one (a baseline existed).
    compared = bool(data["overall"]["baseline"])
    sections = _header(data) + _overall(data, compared) + _per_class(data["per_class"], compared) + [
        "<h2>Per mineral family</h2>", _slice_table(data["families"], "family", compared),
        "<h2>Per photo size</h2>", _slice_table(data["size_buckets"], "size (short side)", compared),
        "<h2>Confusion matrix</h2>",
        f'<img alt="confusion matrix" src="data:image/png;base64,{confusion_chart(data["confusion_matrix"], data["classes"])}">',
    ]
    sections += _worst_confusions(data) + _review_gallery(data)
    sections += ["<h2>Calibration</h2>",
                 f'<img alt="reliability plot" src="data:image/png;base64,{reliability_chart(data["calibration"])}">']
    sections += _robustness(data["robustness"])
    sections.append(open_set_report.section_html(data["open_set"]))
    sections.append("<h2>Data</h2>")
    sections.append(data_report.sections_html(data["data_report"], data_plot) if data["data_report"] else
                    "<p>No data report in the examples artifact.</p>")
    sources = data["sources"]
    sections.append(f'<p class="note">Made from the candidate model <code>{html.escape(sources["model"])}</code> '
                    f'and its evaluation <code>{html.escape(sources["evaluation"])}</code>.</p>')
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>Evaluation: '
            f'{html.escape(data["pipeline_name"])}</title><style>{STYLE}</style></head><body>'
            + "\n".join(sections) + f"<script>{SORT_SCRIPT}</script></body></html>")

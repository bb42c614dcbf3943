"""The slice dashboard: one self-contained HTML page that says whether a model should ship.

Made from one evaluation's artifacts (`EvaluationSources`, below): TFMA's
metrics, plots and validation result, the robustness report, the data
report and the examples judged. It needs no network: charts are embedded
PNGs, the table sorts with a few lines of inline JavaScript.

    gemstone report --pipeline-name gemstone-demo --output report.html

The SliceReport component writes the same page at the end of every run.
"""
from __future__ import annotations

import base64
import dataclasses
import datetime
import html
import io
import json
import os
from typing import Any, Dict, Optional

import numpy as np

from gemstone import contract, data_report, ingestion, open_set_report
from gemstone.evaluation_results import confusion_matrix, load_metrics, load_plots, reliability, review_trade_off
from gemstone.verdict import rejection_reasons, robustness_failures, validation_failures
from gemstone.charts import confusion_chart, reliability_chart, robustness_chart
from gemstone.text import plural


@dataclasses.dataclass(frozen=True)
class EvaluationSources:
    """The artifacts behind one evaluation: what the slice dashboard is made from."""

    evaluation: str  # TFMA output (ModelEvaluation)
    blessing: str  # the ModelBlessing the Pusher read (its `blessed` custom property is the verdict)
    model: str  # the candidate Model
    examples: str  # the Examples it was judged on
    robustness: Optional[str]  # RobustnessReport of the same model, if one was made
    blessed: Optional[bool] = None  # the blessing's `blessed` custom property, as the Pusher read it


WORST_CONFUSIONS = 8
THUMBNAILS_PER_CONFUSION = 6
THUMBNAIL_SIDE = 96


def _read_text(path: str) -> Optional[str]:
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return f.read()


def _per_photo(row: Dict[str, Any]) -> Dict[str, Any]:
    """A line of Robustness' predictions file as {source_path, label, predicted, confidence}.

    Today's lines hold the compact prediction record under "prediction"; runs made
    before it was shared wrote "predicted" and "confidence" beside the label.
    """
    prediction = row.get("prediction") or {}
    return {"source_path": row["source_path"], "label": row["label"],
            "predicted": prediction.get("label", row.get("predicted")),
            "confidence": prediction.get("confidence", row.get("confidence")),
            "known": prediction.get("known"), "novelty": prediction.get("novelty"),
            "review_reason": prediction.get("review_reason")}


def _thumbnail(data: bytes) -> str:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("RGB")
        image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=80)
    return base64.b64encode(buffer.getvalue()).decode()


def collect(sources: EvaluationSources, pipeline_name: str, split: str = "test") -> Dict[str, Any]:
    """Every figure the page shows, as plain data (also what the tests check).

    The verdict is `sources.blessed`: the blessing's `blessed` custom property, the one the Pusher acts on.
    """
    from tfx.utils import path_utils
    import tensorflow_model_analysis as tfma

    vocabulary = _read_text(os.path.join(path_utils.serving_model_path(sources.model), "assets", contract.LABEL_VOCAB))
    classes = vocabulary.splitlines() if vocabulary else []
    metrics = load_metrics(sources.evaluation)
    plots = load_plots(sources.evaluation)
    validation = tfma.load_validation_result(sources.evaluation)
    examples = ingestion.read_examples(sources.examples, split, (contract.LABEL_KEY, contract.FAMILY_KEY))
    family_of = {e[contract.LABEL_KEY].decode(): e[contract.FAMILY_KEY].decode() for e in examples}

    matrix = confusion_matrix(plots["matrices"].get(0.0, []), len(classes))
    overall = metrics.get("overall", {"candidate": {}, "baseline": {}})
    per_class = []
    for class_id, name in enumerate(classes):
        slice_metrics = metrics.get(f"{contract.LABEL_KEY}:{name}", {"candidate": {}, "baseline": {}})
        row = matrix[class_id].copy()
        row[class_id] = 0
        per_class.append({
            "label": name, "family": family_of.get(name, ""),
            "photos": int(slice_metrics["candidate"].get(contract.EXAMPLE_COUNT, 0)),
            "accuracy": slice_metrics["candidate"].get(contract.ACCURACY),
            "previous_accuracy": slice_metrics["baseline"].get(contract.ACCURACY),
            "top_k_accuracy": slice_metrics["candidate"].get(contract.TOP_K_ACCURACY),
            "precision": overall["candidate"].get(("precision", class_id)),
            "recall": overall["candidate"].get(("recall", class_id)),
            "f1": overall["candidate"].get(("f1_score", class_id)),
            "confused_with": classes[int(row.argmax())] if row.sum() else "",
        })

    def slices_of(column):
        return [{"slice": name.split(":", 1)[1], "photos": int(m["candidate"].get(contract.EXAMPLE_COUNT, 0)),
                 "accuracy": m["candidate"].get(contract.ACCURACY), "previous_accuracy": m["baseline"].get(contract.ACCURACY),
                 "top_k_accuracy": m["candidate"].get(contract.TOP_K_ACCURACY)}
                for name, m in sorted(metrics.items()) if name.startswith(column + ":")]

    robustness = json.loads(_read_text(os.path.join(sources.robustness, contract.ROBUSTNESS_REPORT_FILE)) or "null") \
        if sources.robustness else None
    predictions = []
    if sources.robustness:
        text = _read_text(os.path.join(sources.robustness, contract.ROBUSTNESS_PREDICTIONS_FILE)) or ""
        predictions = [_per_photo(json.loads(line)) for line in text.splitlines() if line.strip()]
    # A run made before blessings carried the property: its verdict from what the blessing is made of.
    blessed = sources.blessed if sources.blessed is not None else (
        validation.validation_ok and not robustness_failures(robustness))
    confusions, shown = [], {}
    off_diagonal = matrix - np.diag(np.diag(matrix))
    for flat in np.argsort(-off_diagonal, axis=None)[:WORST_CONFUSIONS]:
        true_id, predicted_id = np.unravel_index(flat, matrix.shape)
        if off_diagonal[true_id, predicted_id] <= 0:
            break
        true_label, predicted_label = classes[true_id], classes[predicted_id]
        photos = [p for p in predictions if p["label"] == true_label and p["predicted"] == predicted_label]
        shown[len(confusions)] = photos[:THUMBNAILS_PER_CONFUSION]
        confusions.append({"label": true_label, "predicted": predicted_label,
                           "photos": int(matrix[true_id, predicted_id])})
    # Only the photos shown are kept in memory, not the whole split's.
    wanted = {p["source_path"] for photos in shown.values() for p in photos}
    image_of = {}
    if wanted:
        shown_examples = ingestion.read_examples(sources.examples, split, ("source_path", contract.IMAGE_KEY),
                                                 keep=lambda e: e["source_path"].decode() in wanted)
        image_of = {e["source_path"].decode(): e[contract.IMAGE_KEY] for e in shown_examples}
    for index, photos in shown.items():
        confusions[index]["thumbnails"] = [
            {"path": p["source_path"], "confidence": p["confidence"], "jpeg_base64": _thumbnail(image_of[p["source_path"]])}
            for p in photos if p["source_path"] in image_of]

    ingestion_report = _read_text(os.path.join(sources.examples, contract.INGESTION_REPORT_FILE))
    calibration_file = _read_text(os.path.join(path_utils.serving_model_path(sources.model), contract.MODEL_ASSETS_DIR,
                                               contract.CALIBRATION_FILE))
    review_threshold = json.loads(calibration_file).get("review_threshold") if calibration_file else None
    return {
        "pipeline_name": pipeline_name, "split": split, "sources": sources.__dict__,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "blessed": blessed,
        "validation_failures": validation_failures(validation),
        "robustness_failures": robustness_failures(robustness),
        "classes": classes,
        "overall": {"candidate": {k: v for k, v in overall["candidate"].items() if isinstance(k, str)},
                    "baseline": {k: v for k, v in overall["baseline"].items() if isinstance(k, str)}},
        "per_class": per_class,
        "families": slices_of(contract.FAMILY_KEY),
        "size_buckets": slices_of(contract.SIZE_BUCKET_KEY),
        "confusion_matrix": matrix.tolist(),
        "calibration": reliability(plots["calibration"]),
        "review": {threshold: review_trade_off(entries) for threshold, entries in plots["matrices"].items()},
        "robustness": robustness,
        "open_set": open_set_report.collect(robustness, predictions, review_threshold),
        "worst_confusions": confusions,
        "data_report": json.loads(ingestion_report) if ingestion_report else None,
        "data_plot": os.path.join(sources.examples, data_report.PLOT_NAME),
    }


# ---- the page ----

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


def render(data: Dict[str, Any]) -> str:
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
        f"<h2>Per class ({plural(len(per_class), 'class')})</h2><p>Click a column to sort. Accuracy on a class is its "
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
                        f"{plural(confusion['photos'], 'photo')}</h3><div class=\"thumbs\">{thumbs}</div>")
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
        plot = _read_bytes(data["data_plot"])
        sections.append(data_report.sections_html(data["data_report"], plot))
    else:
        sections.append("<p>No data report in the examples artifact.</p>")
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>Evaluation: '
            f'{html.escape(data["pipeline_name"])}</title><style>{STYLE}</style></head><body>'
            + "\n".join(sections) + f"<script>{SORT_SCRIPT}</script></body></html>")


def _read_bytes(path: str) -> Optional[bytes]:
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


def write(sources: EvaluationSources, pipeline_name: str, output: str, split: str = "test") -> Dict[str, Any]:
    """Writes the page to `output` and returns the data it shows."""
    import tensorflow as tf

    data = collect(sources, pipeline_name, split)
    parent = os.path.dirname(output)
    if parent:
        tf.io.gfile.makedirs(parent)
    with tf.io.gfile.GFile(output, "w") as f:
        f.write(render(data))
    return data

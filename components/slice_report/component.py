"""SliceReport: writes the slice dashboard (gemstone/report.py) at the end of every run.

The page is the same one `gemstone report` writes: overall metrics against the
previous blessed model, per-class / family / photo-size slices, the confusion
matrix, the worst confusions and the photos flagged for review, each beside
where the model looked (its `explain` signature), the reliability plot, the
robustness chart and the data report. It is written whether or not the model
was blessed: a rejected model's page says why (the Evaluator's failed
thresholds, the robustness gate's failed corruptions). The verdict is the
`blessed` custom property of the blessing the Pusher reads (Robustness'). It
runs after the Pusher, whose PushedModel says which version the page is of, or
that the model was not pushed.
"""
import os

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from components.artifacts import RobustnessReport, SliceDashboard
from gemstone import contract

REPORT_FILE = contract.DASHBOARD_FILE


@component
def SliceReport(evaluation: InputArtifact[standard_artifacts.ModelEvaluation],  # noqa: N802 - TFX naming
                blessing: InputArtifact[standard_artifacts.ModelBlessing],
                model: InputArtifact[standard_artifacts.Model],
                examples: InputArtifact[standard_artifacts.Examples],
                robustness: InputArtifact[RobustnessReport],
                pushed_model: InputArtifact[standard_artifacts.PushedModel],
                dashboard: OutputArtifact[SliceDashboard],
                pipeline_name: Parameter[str] = "",
                split: Parameter[str] = "test"):
    from absl import logging

    from gemstone import report, verdict
    from gemstone.report import EvaluationSources

    sources = EvaluationSources(evaluation=evaluation.uri, blessing=blessing.uri, model=model.uri,
                                examples=examples.uri, robustness=robustness.uri, blessed=verdict.is_blessed(blessing),
                                pushed_to=verdict.pushed_to(pushed_model))
    path = os.path.join(dashboard.uri, REPORT_FILE)
    data = report.write(sources, pipeline_name, path, split=split)
    logging.info("SliceReport: %s (%d classes, %s)", path, len(data["classes"]),
                 "blessed" if data["blessed"] else "not blessed")
    if not data["blessed"]:
        reasons = verdict.rejection_reasons(data["validation_failures"], data["robustness_failures"])
        logging.warning("The model was not blessed, so it is not pushed. Failed checks:\n  %s",
                        "\n  ".join(reasons) or "(see the Evaluator's and Robustness' logs)")

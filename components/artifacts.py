"""The project's own artifact types, in one place, as TFX keeps its own in `tfx.types.standard_artifacts`.

Components import them from here, never from each other. Each TYPE_NAME is
namespaced (`gemstone.<Name>`): the Kubeflow V2 compiler needs <namespace>.<Name>.
It is also what ML Metadata records, so renaming one breaks the lineage of past runs.
"""
from tfx.types import artifact


class RobustnessReport(artifact.Artifact):
    """robustness.json (accuracy per corruption) and predictions.jsonl (clean predictions per photo)."""

    TYPE_NAME = "gemstone.RobustnessReport"  # namespaced: KFP v2 needs <namespace>.<Name>


class ModelCardDocument(artifact.Artifact):
    """model_card.md and model_card.json of one candidate model."""

    TYPE_NAME = "gemstone.ModelCardDocument"  # namespaced: KFP v2 needs <namespace>.<Name>


class SliceDashboard(artifact.Artifact):
    """report.html: one self-contained page per evaluation."""

    TYPE_NAME = "gemstone.SliceDashboard"  # namespaced: KFP v2 needs <namespace>.<Name>

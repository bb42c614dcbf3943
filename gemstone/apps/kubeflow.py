"""Kubeflow Pipelines: compile the pipeline to a KFP v2 spec, and schedule it.

Compiling uses `pipeline/kubeflow_runner.py` (TFX's KubeflowV2DagRunner over the
same `pipeline/dag.py` as the local runner). Scheduling uploads that spec
with the kfp client as a recurring run.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Optional

DEFAULT_EXPERIMENT = "gemstone"


def compile_spec(output: str, image: Optional[str] = None, config=None) -> Path:
    """Writes the KFP v2 PipelineSpec JSON for the pipeline configured by GEMSTONE_* variables."""
    from pipeline import configs, kubeflow_runner

    config = config or configs.PipelineConfig.from_env()
    output = str(Path(output).resolve())
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    kubeflow_runner.compile_pipeline(output, config=config, image=image)
    return Path(output)


def pipeline_spec(path) -> dict:
    """The PipelineSpec inside a compiled file (TFX wraps it in a PipelineJob)."""
    document = json.loads(Path(path).read_text())
    return document.get("pipelineSpec", document)


def kfp_cron(cron: str) -> str:
    """KFP wants six cron fields (seconds first); people write five. Accept both; refuse what KFP would not
    read as meant (gemstone/apps/cron.py: a CronError, which is a ValueError)."""
    from gemstone.apps.cron import validate

    return validate(cron)


def schedule(endpoint: str, package: str, cron: str, experiment: str = DEFAULT_EXPERIMENT,
             job_name: Optional[str] = None, token: Optional[str] = None):
    """Creates (or reuses) the experiment and a recurring run of the compiled pipeline."""
    import kfp

    schedule_cron = kfp_cron(cron)
    document = json.loads(Path(package).read_text())
    spec = document.get("pipelineSpec", document)
    name = job_name or f"{spec['pipelineInfo']['name']} ({cron})"
    # TFX writes a PipelineJob (spec + runtime config); the kfp client takes the
    # bare PipelineSpec as YAML, of which JSON is a subset.
    with tempfile.TemporaryDirectory() as folder:
        spec_file = Path(folder) / "pipeline.yaml"
        spec_file.write_text(json.dumps(spec))
        client = kfp.Client(host=endpoint, existing_token=token or os.environ.get("KFP_TOKEN"))
        exp = client.create_experiment(name=experiment)
        return client.create_recurring_run(
            experiment_id=exp.experiment_id,
            job_name=name,
            cron_expression=schedule_cron,
            pipeline_package_path=str(spec_file),
            pipeline_root=document.get("runtimeConfig", {}).get("gcsOutputDirectory"),
            # A nightly run that was missed should not be replayed many times over.
            no_catchup=True,
            max_concurrency=1,
        )

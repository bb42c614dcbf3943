"""Kubeflow: the compiled spec, the image's recipe, and the scheduling request (no cluster needed)."""
import http.server
import json
import re
import threading
from pathlib import Path

import pytest

from gemstone.apps import cli, kubeflow
from pipeline import configs, kubeflow_runner

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = ["ImageExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Transform", "Trainer",
              "Evaluator", "Pusher"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("kfp") / "pipeline.json"
    config = configs.PipelineConfig(
        pipeline_name="gem88", data="/mnt/photos/gemstones-88", home="/tmp/unused",
        pipeline_root="gs://stones-bucket/pipelines/gem88", serving_dir="gs://stones-bucket/serving/gem88",
        schema_path="")
    kubeflow.compile_spec(str(out), image="registry.example/gemstone:1.2.3", config=config)
    return out


def test_spec_holds_every_component_with_its_dependencies(compiled):
    spec = kubeflow.pipeline_spec(compiled)
    tasks = spec["root"]["dag"]["tasks"]
    for name in COMPONENTS:
        assert name in tasks, sorted(tasks)
    depends = {name: set(task.get("dependentTasks", [])) for name, task in tasks.items()}
    assert depends["StatisticsGen"] == {"ImageExampleGen"}
    assert {"ImageExampleGen", "SchemaGen"} <= depends["Transform"]
    assert {"Transform", "ImageExampleGen"} <= depends["Trainer"]
    assert {"Trainer", "ImageExampleGen"} <= depends["Evaluator"]
    # The Pusher reads Robustness' blessing (the Evaluator's AND the robustness gate), not the Evaluator's.
    assert {"Evaluator", "Trainer"} <= depends["Robustness"]
    assert {"Robustness", "Trainer"} <= depends["Pusher"]
    assert tasks["Pusher"]["inputs"]["artifacts"]["model_blessing"]["taskOutputArtifact"] == {
        "producerTask": "Robustness", "outputArtifactKey": "blessing"}


def test_spec_parses_as_a_kfp_pipeline_spec(compiled):
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec = json_format.ParseDict(kubeflow.pipeline_spec(compiled), pipeline_spec_pb2.PipelineSpec(),
                                 ignore_unknown_fields=False)
    assert spec.pipeline_info.name == "gem88"
    assert "Trainer" in spec.root.dag.tasks


def test_spec_uses_the_image_object_storage_and_installed_modules(compiled):
    text = compiled.read_text()
    assert "registry.example/gemstone:1.2.3" in text
    assert "gs://stones-bucket/pipelines/gem88" in text
    assert "gs://stones-bucket/serving/gem88" in text
    assert "modules.trainer.run_fn" in text and "modules.transform.preprocessing_fn" in text
    assert str(REPO) not in text  # nothing points into this checkout
    assert "--setup_file=/opt/gemstone/setup.py" in text  # the image's copy of the project, for Beam
    # The Trainer starts from the weights the image's build fetched, not from this machine's copy.
    assert "/opt/gemstone/home/backbones/efficientnet_lite2/efficientnet_lite2_notop.h5" in text and "/tmp/unused" not in text


def test_spec_carries_the_ingestion_code_fingerprint_taken_at_compile_time(compiled):
    from components.image_example_gen import fingerprint

    example_gen = kubeflow.pipeline_spec(compiled)["root"]["dag"]["tasks"]["ImageExampleGen"]
    parameters = example_gen["inputs"]["parameters"]
    value = parameters["ingestion_code"]["runtimeValue"]["constantValue"]["stringValue"]
    assert value == fingerprint.ingestion_fingerprint()


def test_curated_schema_path_is_rewritten_for_the_container():
    local = str(configs.SCHEMA_DIR / "gemstone-demo" / "schema.pbtxt")
    assert kubeflow_runner.in_container(local) == "/opt/gemstone/schema/gemstone-demo/schema.pbtxt"
    assert kubeflow_runner.in_container("gs://b/schema.pbtxt") == "gs://b/schema.pbtxt"


def test_dockerfile_installs_the_projects_lock_and_existing_entry_points():
    dockerfile = (REPO / "kubeflow" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.10\.\d+-slim", dockerfile, re.M)  # pinned, and the Python TFX 1.16 needs
    # The locked versions, compiled once: each Kubeflow step is a new container, which would compile TFX again.
    assert "uv pip install --system --no-cache --compile-bytecode -r requirements.lock" in dockerfile
    for copied in re.findall(r"^COPY (\S+)", dockerfile, re.M):
        for name in copied.split():
            assert (REPO / name).exists(), name
    assert str(kubeflow_runner.CONTAINER_REPO_ROOT) in dockerfile
    # Installed as a wheel installs it (the curated schemas are package data): no editable install, no PYTHONPATH.
    assert re.search(r"^RUN uv pip install --system --no-deps --no-build-isolation \.$", dockerfile, re.M)
    assert "PYTHONPATH" not in dockerfile
    cmd = json.loads(re.search(r"^CMD (.+)$", dockerfile, re.M).group(1))
    assert cmd[0] == "gemstone" and "gemstone=gemstone.apps.cli:main" in (REPO / "setup.py").read_text()


def test_the_gpu_image_adds_cudas_libraries_pinned_and_nothing_the_main_lock_pins():
    def pins(path):
        return {line.split("==")[0].lower(): line.split("==")[1] for line in path.read_text().splitlines()
                if "==" in line and not line.lstrip().startswith("#")}

    gpu, main = pins(REPO / "kubeflow" / "requirements-gpu.lock"), pins(REPO / "requirements.lock")
    assert gpu and all(name.startswith("nvidia-") for name in gpu) and not set(gpu) & set(main)
    assert "requirements-gpu.lock" in (REPO / "kubeflow" / "Dockerfile").read_text()


@pytest.mark.parametrize("cron, expected", [("0 2 * * *", "0 0 2 * * *"), ("30 0 2 * * 1-5", "30 0 2 * * 1-5")])
def test_five_field_cron_gets_kfps_seconds_field(cron, expected):
    assert kubeflow.kfp_cron(cron) == expected


def test_bad_cron_is_refused():
    with pytest.raises(ValueError, match="2 fields, not 5"):
        kubeflow.kfp_cron("every night")


class _FakeKfp(http.server.BaseHTTPRequestHandler):
    """Just enough of the KFP v2beta1 REST API to record what the client sends."""

    requests = []

    def _reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        self.requests.append(("GET", self.path, None, dict(self.headers)))
        if self.path.startswith("/apis/v2beta1/healthz"):
            return self._reply({"multi_user": False})
        return self._reply({})  # no experiment of that name yet

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        self.requests.append(("POST", self.path, body, dict(self.headers)))
        if self.path == "/apis/v2beta1/experiments":
            return self._reply({"experiment_id": "exp-7", "display_name": body["display_name"]})
        return self._reply({**body, "recurring_run_id": "rr-42"})

    def log_message(self, *args):
        pass


def test_schedule_creates_an_experiment_and_a_nightly_recurring_run(compiled, capsys):
    server = http.server.HTTPServer(("127.0.0.1", 0), _FakeKfp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _FakeKfp.requests.clear()
    try:
        code = cli.main(["kubeflow", "schedule", "--endpoint", f"http://127.0.0.1:{server.server_port}",
                         "--cron", "0 2 * * *", "--experiment", "nightly", "--package", str(compiled)])
    finally:
        server.shutdown()
    assert code == 0
    posts = {path: body for method, path, body, _ in _FakeKfp.requests if method == "POST"}
    assert posts["/apis/v2beta1/experiments"]["display_name"] == "nightly"
    run = posts["/apis/v2beta1/recurringruns"]
    assert run["experiment_id"] == "exp-7"
    assert run["trigger"]["cron_schedule"]["cron"] == "0 0 2 * * *"
    assert run["mode"] == "ENABLE" and run["no_catchup"] is True and int(run["max_concurrency"]) == 1
    assert run["pipeline_spec"]["pipelineInfo"]["name"] == "gem88"
    assert run["runtime_config"]["pipeline_root"] == "gs://stones-bucket/pipelines/gem88"
    assert "rr-42" in capsys.readouterr().out


def test_serving_manifest_serves_the_pushed_folder_with_tf_serving():
    import yaml

    deployment, service = list(yaml.safe_load_all((REPO / "kubeflow" / "serving.yaml").read_text()))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith("tensorflow/serving:2.16")  # the TF version the model is saved with
    assert "--model_base_path=$(MODEL_BASE_PATH)" in container["args"] and "--rest_api_port=8501" in container["args"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/models/gemstone"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("profile, asked", [("quick", None),
                                            ("thorough", {"cpuLimit": 8.0, "memoryLimit": 32.0,
                                                          "accelerator": {"type": "NVIDIA_TESLA_T4", "count": "1"}})])
def test_the_thorough_profile_asks_kubeflow_for_a_gpu_for_the_trainer_and_quick_asks_for_nothing(
        tmp_path, profile, asked):
    out = tmp_path / "pipeline.json"
    config = configs.PipelineConfig(
        pipeline_name="gem88", data="/mnt/photos/gemstones-88", home="/tmp/unused", profile=profile,
        pipeline_root="gs://stones-bucket/pipelines/gem88", serving_dir="gs://stones-bucket/serving/gem88",
        schema_path="")
    kubeflow.compile_spec(str(out), image="registry.example/gemstone:1.2.3", config=config)
    executors = kubeflow.pipeline_spec(out)["deploymentSpec"]["executors"]
    trainer = next(spec for name, spec in executors.items() if name.startswith("Trainer"))
    assert trainer["container"].get("resources") == asked
    others = [spec["container"].get("resources") for name, spec in executors.items()
              if not name.startswith("Trainer") and "container" in spec]
    assert others and not any(others)  # only the Trainer asks


def test_the_trainers_resources_come_from_the_settings_over_the_profile(monkeypatch):
    monkeypatch.setenv("GEMSTONE_PROFILE", "thorough")
    monkeypatch.setenv("GEMSTONE_TRAINER_ACCELERATOR", "NVIDIA_L4:2")
    monkeypatch.setenv("GEMSTONE_TRAINER_MEMORY", "64")
    spec = kubeflow_runner.trainer_resources(configs.PipelineConfig.from_env())
    assert (spec.accelerator.type, spec.accelerator.count, spec.memory_limit, spec.cpu_limit) == (
        "NVIDIA_L4", 2, 64.0, 8.0)

"""`gemstone`, run as a user runs it (a subprocess): quiet on success, one line and a non-zero status on a mistake.

A mistake visible from the arguments must be answered before TensorFlow loads
(5-15 s on this machine): those tests run the command line's `main` in a
subprocess and then report whether `tensorflow` (and Beam) were imported.
bench/cli_latency.py measures the seconds.
"""
import argparse
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from gemstone import contract, paths
from gemstone.apps import cli, metadata

REPO = Path(__file__).resolve().parents[2]

# What a user must not see on success: tracebacks, finaliser noise, library warnings, C++ and Python logs.
NOISE = [
    r"Traceback \(most recent call last\)", r"Exception ignored", r"\w+Warning\b", r"cuFFT|cuDNN|cuBLAS|CUDA",
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] ",  # TensorFlow's C++ log lines
    r"^[IWEF]\d{4} \d\d:\d\d:\d\d",  # absl / glog C++ log lines
    r"^(INFO|WARNING|ERROR|CRITICAL)[: ](absl|tensorflow|root|apache_beam|kfp)", r"site-packages/",
]

# Runs the command line's main as the `gemstone` script does (argv from sys.argv), then says what it imported.
PROBE = """
import json, sys
sys.argv = ["gemstone"] + json.loads(sys.argv[1])
from gemstone.apps import cli
try:
    code = cli.main()
except SystemExit as e:  # argparse's own usage errors
    code = e.code
print(json.dumps({"code": code, "tensorflow": "tensorflow" in sys.modules, "apache_beam": "apache_beam" in sys.modules}))
"""


def _env(home, **extra):
    """The environment of a user with nothing set but GEMSTONE_HOME (no proxy: the endpoint check is direct)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEMSTONE_") and k != "PYTHONWARNINGS"
           and k.lower() not in ("http_proxy", "https_proxy")}
    env.update(PYTHONPATH=str(REPO), GEMSTONE_HOME=str(home), **extra)
    return env


def gemstone(home, *args, env=None, timeout=600):
    """`python -m gemstone.apps.cli ARGS`, the worktree's code (not an installed script)."""
    return subprocess.run([sys.executable, "-m", "gemstone.apps.cli", *map(str, args)], env=env or _env(home),
                          capture_output=True, text=True, timeout=timeout, cwd=home)


def probe(home, *args, env=None):
    """(exit status, stderr, imported {tensorflow, apache_beam}) of the command line's main on ARGS."""
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(map(str, args)))], env=env or _env(home),
                            capture_output=True, text=True, timeout=300, cwd=home)
    assert result.stdout.strip(), result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return report["code"], result.stderr, report


def assert_clean(stderr):
    found = [line for line in stderr.splitlines() for pattern in NOISE if re.search(pattern, line)]
    assert found == [], stderr[-3000:]


def assert_one_line_error(stderr, expected):
    errors = [line for line in stderr.splitlines() if line.startswith("gemstone ")]
    assert len(errors) == 1 and ": error: " in errors[0] and expected in errors[0], stderr
    assert_clean(stderr)


# --- A fake pipeline: an ML Metadata store with two runs, one pushed -----------------------------

def _fake_pipeline(home: Path, name: str) -> Path:
    """ML Metadata of two runs (one failed at the Trainer, one blessed and pushed with its model card); the version."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb

    db = paths.metadata_path(name, str(home))
    db.parent.mkdir(parents=True)
    config = pb.ConnectionConfig()
    config.sqlite.filename_uri = str(db)
    config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = metadata_store.MetadataStore(config)
    run_type = store.put_context_type(pb.ContextType(name="pipeline_run"))
    types = {n: store.put_execution_type(pb.ExecutionType(name=f"tfx.components.{n.lower()}.component.{n}"))
             for n in ("Trainer", "Evaluator", "Pusher")}
    # As TFX attributes each execution: to the pipeline's context and its node's ("<pipeline>.<node id>").
    [pipeline] = store.put_contexts([pb.Context(
        type_id=store.put_context_type(pb.ContextType(name=metadata.PIPELINE_CONTEXT)), name=name)])
    node_type = store.put_context_type(pb.ContextType(name=metadata.NODE_CONTEXT))
    nodes = dict(zip(types, store.put_contexts([pb.Context(type_id=node_type, name=f"{name}.{n}") for n in types])))
    kinds = {n: store.put_artifact_type(pb.ArtifactType(name=n)) for n in ("Model", "ModelBlessing", "PushedModel")}
    version = paths.serving_dir(name, str(home)) / "1700000000"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"")
    (version / contract.MODEL_CARD_JSON_FILE).write_text(json.dumps(
        {"metrics": {"overall": {contract.ACCURACY: 0.75, contract.EXAMPLE_COUNT: 40.0}}}))

    def artifact(kind, uri, **properties):
        a = pb.Artifact(type_id=kinds[kind], uri=str(uri))
        for key, value in properties.items():
            if isinstance(value, int):
                a.custom_properties[key].int_value = value
            else:
                a.custom_properties[key].string_value = value
        return a

    def event(kind, key):
        e = pb.Event(type=kind)
        e.path.steps.add().key = key
        return e

    def execute(context_id, component, state, inputs=(), outputs=(), config=None):
        execution = pb.Execution(type_id=types[component], last_known_state=state)
        if config is not None:
            execution.custom_properties["custom_config"].string_value = json.dumps(config)
        pairs = [(a, event(pb.Event.INPUT, k)) for k, a in inputs] + [(a, event(pb.Event.OUTPUT, k)) for k, a in outputs]
        _, artifact_ids, _ = store.put_execution(execution, pairs,
                                                 store.get_contexts_by_id([context_id, pipeline, nodes[component]]))
        return artifact_ids

    first, second = (store.put_contexts([pb.Context(type_id=run_type, name=f"run-{i}")])[0] for i in (1, 2))
    execute(first, "Trainer", pb.Execution.FAILED, config={"epochs": 5})
    root = paths.pipeline_root(name, str(home))
    model_id = execute(second, "Trainer", pb.Execution.COMPLETE, outputs=[("model", artifact("Model", root / "m"))],
                       config={"epochs": 7})[0]
    model = store.get_artifacts_by_id([model_id])[0]
    execute(second, "Evaluator", pb.Execution.COMPLETE, inputs=[("model", model)],
            outputs=[("blessing", artifact("ModelBlessing", root / "b", blessed=1))])
    execute(second, "Pusher", pb.Execution.COMPLETE, inputs=[("model", model)], outputs=[(
        "pushed_model", artifact("PushedModel", root / "p", pushed=1, pushed_version=version.name,
                                 pushed_destination=str(version)))])
    return version


@pytest.fixture
def home(tmp_path):
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


# --- Mistakes: one line, status 2, before TensorFlow loads -----------------------------------------

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def inputs(home, demo_photos):
    """Folders and files the mistakes below are made with."""
    empty = home / "empty"
    empty.mkdir()
    flat = home / "flat"
    flat.mkdir()
    for photo in sorted((demo_photos / "images").rglob("*.jpg"))[:3]:
        shutil.copy(photo, flat / photo.name)
    (home / "bad-headers.csv").write_text(f"file,class\n{(flat / next(flat.iterdir()).name)},Ruby\n")
    (home / "spec.json").write_text(json.dumps({"pipelineSpec": {"pipelineInfo": {"name": "gem88"}}}))
    fake_model = home / "fake-model" / "3"
    fake_model.mkdir(parents=True)
    (fake_model / "saved_model.pb").write_bytes(b"")  # enough for the checks, which run before TensorFlow
    logs = {}
    for folder, model in (("gem88", "gem88"), ("shop", "gem77")):  # gem77: a model no pipeline here made
        logs[folder] = home / "serving-logs" / folder
        logs[folder].mkdir(parents=True)
        (logs[folder] / contract.PREDICTION_LOG_FILE).write_text(json.dumps(
            {"model": model, "version": "1", "label": "Ruby", "confidence": 0.9, "needs_review": False,
             "stats": {"brightness": 0.5}}) + "\n")
    return {"empty": empty, "flat": flat, "fake_model": fake_model.parent, "logs": logs["gem88"],
            "stray_logs": logs["shop"], "photos": demo_photos / "images"}


MISTAKES = {
    "inspect-data, no such folder": (["inspect-data", "{home}/nope"], "data folder not found"),
    "inspect-data, empty folder": (["inspect-data", "{empty}"], "no photos in"),
    "inspect-data, photos without class folders": (["inspect-data", "{flat}"], "none inside a class folder"),
    "inspect-data, manifest with wrong headers": (["inspect-data", "{home}/bad-headers.csv"],
                                                  "lacks the columns path and label (it has: file, class)"),
    "inspect-data, an existing file as the output folder": (["inspect-data", "{photos}", "--output",
                                                             "{home}/spec.json"], "is a file: give a folder for"),
    "inspect-data, a negative near-duplicate distance": (["inspect-data", "{photos}", "--near-duplicate-distance",
                                                          "-3"], "must be 0 to 64 (bits of a 64-bit perceptual hash)"),
    "make-demo-data, not a number": (["make-demo-data", "{home}/demo", "--per-class", "forty"],
                                     "argument --per-class: not a whole number: 'forty'"),
    "batch-infer, empty folder": (["batch-infer", "--model", "{fake_model}", "--input", "{empty}", "--output",
                                   "{home}/out"], "no files under"),
    "batch-infer, mistyped model": (["batch-infer", "--model", "{home}/serving/gem89", "--input", "{flat}",
                                     "--output", "{home}/out"], "no SavedModel at"),
    "batch-infer, own option mistyped as Beam's": (["batch-infer", "--model", "{fake_model}", "--input", "{flat}",
                                                    "--output", "{home}/out", "--batch_size", "8"],
                                                   "did you mean --batch-size?"),
    "batch-infer, mistyped Beam option": (["batch-infer", "--model", "{fake_model}", "--input", "{flat}",
                                           "--output", "{home}/out", "--runer=DirectRunner"], "--runner?"),
    "serve, mistyped model": (["serve", "--model", "{home}/serving/gem89"], "no SavedModel at"),
    "serve, no key in the key file": (["serve", "--model", "{fake_model}", "--api-key-file", "{home}/nokey"],
                                      "cannot read --api-key-file"),
    "explain, no such photo": (["explain", "--model", "{fake_model}", "{home}/nope.jpg", "--output", "{home}/out"],
                               "no such photo or folder"),
    "explain, a model without the explain signature": (["explain", "--model", "{fake_model}", "{flat}", "--output",
                                                        "{home}/out"], "has no `explain` signature"),
    "report, mistyped option": (["report", "--outptu", "{home}/r.html"], "unknown option --outptu: did you mean "
                                                                          "--output?"),
    "serve, mistyped required option": (["serve", "--modle", "{fake_model}"], "did you mean --model?"),
    "serve, a port out of range": (["serve", "--model", "{fake_model}", "--port", "80000"],
                                   "--port 80000 is not a port"),
    "backbone fetch, no such file": (["backbone", "fetch", "--from-file", "{home}/nope.pth"],
                                     "/nope.pth: no such file; give the weights file"),
    "drift, no such log folder": (["drift", "--logs", "{home}/nope"], "log folder not found"),
    "drift, logs of a model that is no pipeline": (["drift", "--logs", "{stray_logs}"], "give --pipeline-name"),
    "where, mistyped pipeline": (["where", "--pipeline-name", "gem99"], "no pipeline 'gem99'"),
    "report, mistyped pipeline": (["report", "--pipeline-name", "gem99"], "did you mean 'gem88'?"),
    "report, output inside a file": (["report", "--output", "{home}/spec.json/report.html"],
                                     "a folder of that path is a file"),
    "runs, mistyped pipeline": (["runs", "--pipeline-name", "gemstone-dmeo"], "no pipeline 'gemstone-dmeo'"),
    "lineage, not a model folder": (["lineage", "{empty}"], "no SavedModel at"),
    "kubeflow compile without its settings": (["kubeflow", "compile", "--output", "{home}/k.json"],
                                              "GEMSTONE_PIPELINE_ROOT"),
    "kubeflow schedule, unreachable endpoint": (["kubeflow", "schedule", "--endpoint", "http://127.0.0.1:{port}",
                                                 "--cron", "0 2 * * *", "--package", "{home}/spec.json"],
                                                "cannot reach Kubeflow Pipelines"),
    "kubeflow schedule, not a compiled spec": (["kubeflow", "schedule", "--endpoint", "http://127.0.0.1:{port}",
                                                "--cron", "0 2 * * *", "--package", "{home}/bad-headers.csv"],
                                               "is not a pipeline spec written by `gemstone kubeflow compile`"),
    "kubeflow schedule, not a cron": (["kubeflow", "schedule", "--endpoint", "http://127.0.0.1:{port}", "--cron",
                                       "nightly", "--package", "{home}/bad-headers.csv"], "not a cron expression"),
    "kubeflow schedule, a minute out of range": (["kubeflow", "schedule", "--endpoint", "http://127.0.0.1:{port}",
                                                   "--cron", "61 2 * * *", "--package", "{home}/spec.json"],
                                                  "minute 61 is out of range 0-59"),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_a_mistake_gets_one_line_and_status_2_before_tensorflow_loads(mistake, home, inputs):
    (home / "metadata" / "gem88").mkdir(parents=True)  # one pipeline here, for the did-you-mean
    args, expected = MISTAKES[mistake]
    values = {"home": home, "port": _free_port(), **inputs}
    code, stderr, imported = probe(home, *[a.format(**values) for a in args])
    assert code == 2, stderr
    assert_one_line_error(stderr, expected)
    assert not imported["tensorflow"] and not imported["apache_beam"], imported


def test_a_busy_port_is_said_in_one_line(home, inputs):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, stderr, imported = probe(home, "serve", "--model", inputs["fake_model"], "--port",
                                       taken.getsockname()[1])
    assert code == 2
    assert_one_line_error(stderr, "is in use: stop the server using it, or choose another --port")
    assert not imported["tensorflow"]


def test_a_mistyped_name_is_not_taken_for_the_demo_pipeline(home):
    (home / "metadata" / "gem88").mkdir(parents=True)
    (home / "pipelines" / "gemstone-demo").mkdir(parents=True)
    code, stderr, _ = probe(home, "where")
    assert code == 2
    assert_one_line_error(stderr, "several pipelines under")
    code, stderr, _ = probe(home, "runs", env=_env(home.parent / "elsewhere"))
    assert code == 2
    assert_one_line_error(stderr, "no pipeline has run under")


def test_a_failure_that_is_no_mistake_is_one_line_and_status_3(home):
    broken = paths.metadata_path("gem88", str(home))
    broken.parent.mkdir(parents=True)
    broken.write_text("not a database")
    result = gemstone(home, "runs")
    assert result.returncode == 3
    assert result.stderr.startswith("gemstone runs: failed: ") and len(result.stderr.splitlines()) == 1
    assert result.stderr.rstrip().endswith("(run again with --verbose for the traceback)")
    verbose = gemstone(home, "runs", "--verbose")
    assert verbose.returncode == 3 and "Traceback (most recent call last)" in verbose.stderr


def _wrapped_by_beam():
    """What Beam raises when Ctrl-C lands in a step: a RuntimeError naming it, the KeyboardInterrupt as context."""
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("KeyboardInterrupt [while running 'Classify/BeamML_RunInference']")
    except RuntimeError as e:
        return e


@pytest.mark.parametrize("raised", [
    KeyboardInterrupt(), _wrapped_by_beam(),
    # From a Beam worker process only the text comes back.
    RuntimeError("KeyboardInterrupt [while running 'Load']")], ids=["plain", "wrapped", "text"])
def test_ctrl_c_is_status_130_however_it_arrives(raised, tmp_path, monkeypatch, capsys):
    from gemstone.apps.commands import data as data_commands

    def interrupted(args):
        raise raised

    monkeypatch.setattr(data_commands, "make_demo_data", interrupted)
    assert cli.main(["make-demo-data", str(tmp_path)]) == cli.INTERRUPTED == 130
    assert capsys.readouterr().err == "gemstone make-demo-data: interrupted\n"


@pytest.mark.slow  # a subprocess that loads TensorFlow and Beam (10-25 s)
def test_ctrl_c_on_batch_infer_exits_130_and_writes_nothing(home, contract_model):
    from gemstone import demo_data

    photos = demo_data.make_demo_data(home / "photos", per_class=30, seed=2, size=32).out_dir / "images"
    out = home / "out"
    # SIGINT as a terminal's foreground job has it: tests started in the background (`make test &`, CI runners)
    # inherit it ignored, and Python keeps it ignored, so Ctrl-C would never reach the run.
    run = subprocess.Popen([sys.executable, "-m", "gemstone.apps.cli", "batch-infer", "--model", str(contract_model),
                            "--input", str(photos), "--output", str(out)], env=_env(home), cwd=home, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        said = []
        for line in run.stderr:  # Ctrl-C once the model is at work
            said.append(line)
            if "a worker has classified" in line:
                run.send_signal(signal.SIGINT)
                break
        _, rest = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()  # never leave the run behind the test
    stderr = "".join(said) + rest
    assert run.returncode == 130, stderr
    assert stderr.rstrip().splitlines()[-1] == "gemstone batch-infer: interrupted"
    assert not out.exists()
    assert_clean(stderr)


def test_report_given_a_folder_writes_report_html_into_it(home, monkeypatch, capsys):
    from gemstone import report as report_lib

    _fake_pipeline(home, "gem88")
    monkeypatch.setenv("GEMSTONE_HOME", str(home))
    monkeypatch.setattr(metadata, "latest_output_uri", lambda store, component, key: str(home / key))
    monkeypatch.setattr(metadata, "latest_evaluation", lambda store: "the evaluation")

    def write(sources, pipeline_name, output):  # TFMA's part has tests of its own (report_test, test_dashboard)
        Path(output).write_text("<html></html>")
        return {"blessed": True, "overall": {"candidate": {contract.ACCURACY: 0.5, contract.EXAMPLE_COUNT: 2.0}},
                "split": "test", "classes": ["Ruby", "Spinel"]}

    monkeypatch.setattr(report_lib, "write", write)
    folder = home / "dashboards"
    folder.mkdir()
    assert cli.main(["report", "--output", str(folder)]) == cli.OK
    assert (folder / "report.html").read_text() == "<html></html>"
    assert capsys.readouterr().out.splitlines()[-1] == f"Report: {folder / 'report.html'}"


def test_drift_does_not_judge_under_its_minimum_sample(home, inputs):
    _fake_pipeline(home, "gem88")
    code, stderr, imported = probe(home, "drift", "--logs", inputs["logs"], "--output", home / "drift")
    assert code == 0 and not imported["tensorflow"], stderr
    report = json.loads((home / "drift" / "drift_report.json").read_text())
    assert report["judged"] is False and report["logged_predictions"] == 1 and report["pipeline"] == "gem88"
    assert report["anomalies"] == [] and not report["drifted"]
    assert_clean(stderr)


def test_drift_output_line_says_too_few_and_the_pipeline_it_chose(home, inputs):
    _fake_pipeline(home, "gem88")
    result = gemstone(home, "drift", "--logs", inputs["logs"], "--min-predictions", "5")
    assert result.returncode == 0, result.stderr
    assert "compared with pipeline 'gem88'" in result.stdout
    assert "Too few to judge: drift is judged from 5 logged predictions" in result.stdout
    report = paths.reports_dir("gem88", str(home)) / "drift" / "drift_report.json"
    assert result.stdout.rstrip().endswith(f"Report: {report}") and report.is_file()
    assert not (home / "drift_report.json").exists()  # not in the current folder (a checkout, often)


# --- Success: what the command has to say, and nothing else ---------------------------------------

def test_where_runs_and_lineage_answer_from_metadata_alone(home):
    version = _fake_pipeline(home, "gem88")
    code, stderr, imported = probe(home, "runs")  # the only pipeline here
    assert code == 0 and not imported["tensorflow"], stderr
    result = gemstone(home, "runs")
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Runs of pipeline 'gem88'")
    assert lines[1].split() == ["started", "outcome", "blessed", "pushed", "test", "accuracy", "components", "run",
                                "id"]
    assert "failed at Trainer" in lines[2] and lines[2].endswith("run-1")
    assert re.search(r"finished\s+yes\s+1700000000\s+0\.750 on 40 photos\s+3 \(0 cached\)\s+run-2$", lines[3]), lines
    assert_clean(result.stderr)

    result = gemstone(home, "where")
    assert result.returncode == 0 and f"pushed model: {version}" in result.stdout, result.stderr
    assert_clean(result.stderr)

    result = gemstone(home, "lineage", version.parent)  # the base folder stands for its newest version
    assert result.returncode == 0, result.stderr
    lineage = json.loads(result.stdout)
    assert lineage["pushed_model"] == str(version.resolve()) and lineage["trainer_settings"] == {"epochs": 7}
    assert "Model" in lineage["artifacts"]
    assert_clean(result.stderr)


def test_inspect_data_is_quiet_and_says_what_it_quarantined(home, demo_photos):
    data = home / "stones"
    shutil.copytree(demo_photos / "images", data / "images")
    shutil.copy(demo_photos / "manifest.csv", data / "manifest.csv")
    with open(data / "manifest.csv", "a") as f:
        f.write(",Ruby,Corundum,ruby-x\n")  # a row without a path
    result = gemstone(home, "inspect-data", data / "manifest.csv", "--output", home / "report")
    assert result.returncode == 0, result.stderr
    assert re.search(r"quarantined bad_manifest_row: 1 \(e\.g\. manifest\.csv:\d+: line \d+ has no path\)",
                     result.stdout), result.stdout
    assert (home / "report" / "report.json").is_file()
    assert "inspecting" in result.stderr  # the progress bar
    assert_clean(result.stderr)

    shutil.copy(next((data / "images" / "Ruby").glob("*.jpg")), data / "images" / "stray.jpg")
    result = gemstone(home, "inspect-data", data / "images", "--output", home / "report")
    assert result.returncode == 0 and "note: 1 photo not inside a class folder, so not used" in result.stdout, result.stderr


@pytest.mark.slow  # a subprocess that loads TensorFlow (10-25 s); the work itself is tested in-process
def test_batch_infer_is_quiet_and_shows_progress(home, contract_model, demo_photos):
    result = gemstone(home, "batch-infer", "--model", contract_model, "--input", demo_photos / "images",
                      "--output", home / "out")
    assert result.returncode == 0, result.stderr
    files = len(list((demo_photos / "images").rglob("*.jpg")))
    assert f"{files} predictions, 0 errors" in result.stdout
    assert f"Classifying {files} files with model" in result.stderr
    assert_clean(result.stderr)


def test_verbose_shows_the_libraries_logs(home):
    _fake_pipeline(home, "gem88")
    quiet, verbose = gemstone(home, "runs"), gemstone(home, "runs", "--verbose")
    assert quiet.returncode == verbose.returncode == 0
    assert "MetadataStore" not in quiet.stderr and re.search(r"^INFO absl: MetadataStore", verbose.stderr, re.M)


def _call(url, body=None, key=None):
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body else None)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.slow  # a subprocess that loads TensorFlow (10-25 s); the work itself is tested in-process
def test_serve_loads_before_it_answers_takes_the_key_from_a_file_and_stops_cleanly(home, contract_model, demo_photos):
    (home / "key").write_text("s3cret\n")
    port = _free_port()
    # Started with SIGINT ignored, as a shell's `serve ... &` starts it: SIGINT must stop it all the same.
    server = subprocess.Popen([sys.executable, "-m", "gemstone.apps.cli", "serve", "--model", str(contract_model),
                               "--port", str(port), "--api-key-file", str(home / "key")],
                              env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=home,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        first = server.stdout.readline()
        assert first.startswith("Serving") and "API key required" in first, server.stderr.read()
        url = f"http://127.0.0.1:{port}/v1/models/model"
        status, body = _call(url, key="s3cret")
        assert status == 200 and body["model_version_status"][0]["state"] == "AVAILABLE"
        assert _call(url)[0] == 401
        photo = base64.b64encode(next((demo_photos / "images" / "Ruby").glob("*.jpg")).read_bytes()).decode()
        status, body = _call(f"{url}:predict?output=compact", {"instances": [{"b64": photo}]}, key="s3cret")
        assert status == 200 and set(body["predictions"][0]) == {
            "label", "confidence", "top_k", "family", "family_confidence", "needs_review", "known", "novelty",
            "review_reason"}
    finally:
        server.send_signal(signal.SIGINT)
        try:
            _, stderr = server.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            server.kill()  # never leave a server behind the test
            server.communicate()
            raise
    assert server.returncode == 0, stderr
    assert "s3cret" not in " ".join(server.args) and "Stopped." in stderr
    assert_clean(stderr)
    from gemstone.apps import prediction_log

    [logged] = prediction_log.read(home / "serving-logs" / "model")  # closed whole at the stop
    assert logged.predict_log.request.model_spec.name == "model"


@pytest.mark.slow  # a subprocess that loads TensorFlow (10-25 s); the work itself is tested in-process
def test_kubeflow_compile_with_its_settings_is_quiet(home):
    env = _env(home, GEMSTONE_PIPELINE_NAME="gem88", GEMSTONE_DATA="/mnt/photos/gemstones-88",
               GEMSTONE_PIPELINE_ROOT="gs://b/pipelines/gem88", GEMSTONE_SERVING_DIR="gs://b/serving/gem88",
               GEMSTONE_IMAGE="registry.example/gemstone:1")
    result = gemstone(home, "kubeflow", "compile", "--output", home / "k.json", env=env)
    assert result.returncode == 0, result.stderr
    assert "Compiled KFP v2 pipeline spec" in result.stdout and str(home) not in (home / "k.json").read_text()
    assert_clean(result.stderr)


# --- Help and version -------------------------------------------------------------------------------

def _parsers(parser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)


def test_every_option_says_what_it_is():
    parsers = list(_parsers(cli.build_parser()))
    silent = [f"{p.prog} {'/'.join(a.option_strings) or a.dest}" for p in parsers for a in p._actions
              if not a.help and not isinstance(a, argparse._SubParsersAction)]
    assert len(parsers) > 12 and silent == []
    text = next(p for p in parsers if p.prog.endswith("batch-infer")).format_help()
    assert "(default: 32)" in text and "Beam options" in text


def _commands(parser, words=()):
    """(the words that name it, its parser) of every command: `where`, `kubeflow schedule`, ..."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if sub.get_default("func"):
                    yield [*words, name], sub
                yield from _commands(sub, [*words, name])


def test_every_command_suggests_the_option_a_typo_was_meant_to_be(capsys):
    commands = list(_commands(cli.build_parser()))
    assert len(commands) > 12
    for words, parser in commands:
        for option in [name for a in parser._actions for name in a.option_strings if name.startswith("--")]:
            middle = len(option) // 2 + 1
            typo = option[:middle] + "x" + option[middle:]  # --output: --outxput
            with pytest.raises(SystemExit) as exit_:
                cli.build_parser().parse_known_args([*words, typo, "1"])
            error = capsys.readouterr().err.splitlines()[-1]
            assert exit_.value.code == 2
            assert error == f"gemstone {' '.join(words)}: error: unknown option {typo}: did you mean {option}?"


def test_version_and_exit_codes_in_help(home):
    result = gemstone(home, "--version")
    assert result.returncode == 0 and re.match(r"gemstone \d+\.\d+\.\d+ \(TFX 1\.16", result.stdout)
    result = gemstone(home, "drift", "--help")
    assert "1 drift found" in " ".join(result.stdout.split())
    result = gemstone(home, "--help")
    assert "Exit status: 0 done; 1" in " ".join(result.stdout.split())


def test_a_reader_that_goes_away_is_not_an_error(tmp_path, monkeypatch):
    """`gemstone where | head -1`: the rest of the output has nowhere to go; that is the reader's choice."""
    (tmp_path / "pipelines" / "demo").mkdir(parents=True)
    monkeypatch.setenv("GEMSTONE_HOME", str(tmp_path))
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line
    saved = os.dup(1)
    try:
        os.dup2(write_end, 1)
        monkeypatch.setattr(sys, "stdout", open(1, "w", buffering=1, closefd=False))  # a terminal-like line flush
        status = cli.main(["where", "--pipeline-name", "demo"])
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(write_end)
    assert status == cli.OK


def test_backbone_fetch_offers_the_pretrained_backbones_default_first():
    from gemstone import backbones

    assert cli.PRETRAINED_BACKBONES[0] == backbones.DEFAULT_BACKBONE
    assert set(cli.PRETRAINED_BACKBONES) == set(backbones.BACKBONES)

"""What `gemstone run-pipeline` prints, from plain data: the component lines, the verdict and why, the push, and
the failing component with the end of its log. (The command on a real run: tests/test_pipeline_e2e.py.)"""
import os
from pathlib import Path

from gemstone.apps import metadata, run_report

NODES = ["ImageExampleGen", "ImportSchemaGen", "StatisticsGen", "ExampleValidator", "DataGate", "Transform",
         "Trainer", "Evaluator", "Robustness", "Pusher", "SliceReport", "ModelCard"]


def _record(component, state, seconds=0.0, type_name=None, number=1):
    return metadata.ExecutionRecord(number, component, state, 100.0, 100.0 + seconds,
                                    type_name or f"tfx.components.{component}")


def _summary(**changes):
    """run_summary's dict of a first run that blessed and pushed its model."""
    summary = {"blessed": True, "reasons": [], "compared": None, "accuracy_floor": 0.5, "max_accuracy_drop": 0.05,
               "accuracy": 0.9688, "top_k_accuracy": 1.0, "test_photos": 64, "baseline_accuracy": None,
               "pushed_version": "1700000000", "pushed_destination": "/home/serving/demo/1700000000",
               "pusher_cached": False, "already_serving_version": None, "already_serving_destination": None,
               "serving_dir": "/home/serving/demo", "dashboard": "/home/pipelines/demo/SliceReport/dashboard/12/r.html",
               "model_card": "/home/pipelines/demo/ModelCard/card/13/model_card.md"}
    summary.update(changes)
    return summary


def test_a_component_line_says_ran_and_how_long_or_cached():
    assert run_report.component_line(_record("Trainer", "COMPLETE", 86.4)) == "  Trainer           ran in 86 s"
    assert run_report.component_line(_record("Transform", "CACHED")) == "  Transform         cached"
    assert run_report.component_line(_record("Trainer", "FAILED", 2.25)) == "  Trainer           failed after 2.2 s"
    assert run_report.duration(151) == "2 min 31 s"


def test_the_resolver_is_a_node_not_a_component():
    resolver = _record("latest_blessed_model_resolver", "COMPLETE", type_name=metadata.RESOLVER_TYPE)
    assert not run_report.is_component(resolver) and run_report.is_component(_record("Pusher", "COMPLETE"))
    records = [resolver, _record("Trainer", "CACHED"), _record("Evaluator", "COMPLETE", 9)]
    assert run_report.finished_line(records, 45) == "Finished in 45 s: 1 components ran, 1 came from the cache."


def test_a_first_run_is_blessed_for_its_accuracy_with_nothing_to_compare_with_and_pushed():
    lines = run_report.summary_lines("demo", _summary(), "/home/logs/demo/1.log")
    assert lines[:4] == ["Verdict: blessed:", "  test accuracy 0.969, at least 0.500 required",
                         "  no blessed model before it to compare with", "  the robustness and open-set gates passed"]
    assert "Test photos: top-1 accuracy 0.969, top-3 1.000, on 64 photos" in lines
    assert "Pushed: version 1700000000" in lines
    assert "  serve it:     gemstone serve --model /home/serving/demo" in lines


def test_a_model_compared_with_the_latest_blessed_one_says_the_change():
    lines = run_report.verdict_lines(_summary(compared="baseline", baseline_accuracy=0.95))
    assert "  against the latest blessed model, 0.950: change +0.019 (down to 0.050 below it allowed)" in lines


def test_a_second_run_with_nothing_changed_is_not_compared_with_itself_and_pushes_nothing():
    summary = _summary(compared="itself", pushed_version=None, pushed_destination=None,
                       already_serving_version="1700000000", already_serving_destination="/home/serving/demo/1700000000")
    lines = run_report.summary_lines("demo", summary, "/home/logs/demo/2.log")
    assert "  not compared with itself: the model (the Trainer's, from the cache) is the latest blessed one" in lines
    assert "Not pushed: already serving version 1700000000" in lines
    assert not any(line.startswith("Pushed") for line in lines)
    screen = ["Running ...", "  log"] + [run_report.component_line(_record(n, "CACHED")) for n in NODES] + \
        ["Finished ...", ""] + lines
    assert len(screen) <= 40


def test_a_push_an_earlier_run_made_is_not_said_to_be_this_runs():
    line = run_report.push_line(_summary(pusher_cached=True))
    assert line == "Not pushed again: an earlier run pushed it as version 1700000000"


def test_a_model_not_blessed_gives_the_reasons_and_is_not_pushed():
    reasons = ["Evaluator threshold failed: overall: sparse_categorical_accuracy (candidate) = 0.1250; "
               "value_threshold { lower_bound { value: 1.01 } }", "Robustness gate failed: jpeg_q10: ..."]
    summary = _summary(blessed=False, reasons=reasons, pushed_version=None, pushed_destination=None)
    lines = run_report.summary_lines("demo", summary, "/l.log")
    assert lines[:3] == ["Verdict: NOT blessed, so not pushed:"] + [f"  {r}" for r in reasons]
    assert "Not pushed: the model was not blessed" in lines
    assert not any("serve it" in line for line in lines)


def test_paths_inside_the_current_folder_are_shown_relative_to_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_report.shown(str(tmp_path / ".gemstone" / "x.log")) == os.path.join(".gemstone", "x.log")
    assert run_report.shown("/elsewhere/x.log") == "/elsewhere/x.log"


LOG = "\n".join(["INFO:absl:Component Transform is running.", "transforming", "INFO:absl:Component Transform is "
                 "finished.", "INFO:absl:Component Trainer is running."] + [f"epoch {i}" for i in range(30)]
                + ["ValueError: " + "x" * 500, ""])


def test_the_failed_component_is_ml_metadatas_failed_execution_else_the_one_the_log_left_unfinished():
    assert run_report.failed_component([_record("Evaluator", "FAILED")], LOG) == "Evaluator"
    assert run_report.failed_component([_record("Transform", "COMPLETE")], LOG) == "Trainer"
    assert run_report.failed_component([], "ModuleNotFoundError: No module named 'pipeline'") is None


def test_the_end_of_the_log_is_its_last_lines_each_cut_to_a_screen_line():
    tail = run_report.log_tail(LOG, "Trainer")
    assert len(tail) == run_report.LOG_TAIL_LINES and tail[0] == "epoch 16"
    assert tail[-1].startswith("ValueError: xxx") and len(tail[-1]) == run_report.LOG_LINE_WIDTH
    # Only the failing component's part: not the lines before it started.
    short = run_report.log_tail("INFO:absl:Component Transform is running.\nfine\n"
                                "INFO:absl:Component Trainer is running.\nboom\n", "Trainer")
    assert short == ["INFO:absl:Component Trainer is running.", "boom"]
    assert run_report.log_tail("a\nb\n", None) == ["a", "b"]


def test_a_failure_names_the_component_and_shows_the_end_of_its_log():
    lines = run_report.failure_lines("Trainer", LOG, "/l.log", 88)
    assert lines[0] == "FAILED at Trainer, after 88 s. The end of its log (/l.log):"
    assert lines[-1].startswith("    ValueError")
    assert run_report.failure_lines(None, "boom", "/l.log", 3)[0].startswith("FAILED before any component ran")


def test_a_run_ended_by_a_signal_says_so():
    line = run_report.failure_lines("Transform", LOG, "/l.log", 41, status=-9)[0]
    assert line == ("FAILED at Transform: the tfx CLI was ended by SIGKILL, from outside this run, after 41 s. "
                    "The end of its log (/l.log):")


# Lines as the Trainer writes them (absl's INFO lines, Keras' epochs at verbose 2), after an earlier component's.
TRAINING_LOG = """INFO:absl:Component Tuner is running.
INFO:absl:Tuner trial 0: {} -> eval accuracy 0.8000
INFO:absl:Component Trainer is running.
INFO:absl:Frozen trunk, train: view 1 of 3 done, 2456 photos, 60 photos/s.
INFO:absl:Stage 1: the head on frozen features, 7368 samples (3 views of 2456 photos), 50 epochs.
Epoch 1/50
231/231 - 2s - loss: 1.7317 - val_loss: 7.6855
Epoch 50/50
231/231 - 2s - loss: 0.9475 - val_loss: 6.8
INFO:absl:Whole network: 64 backbone layers train through a linear read-out, learning rate 0.0001 at the top \
falling to 1e-05 at the stem over 6 groups, warm-up 1 epoch then cosine decay, up to 10 epochs of 2456 photos.
Epoch 1/10
77/77 - 170s - loss: 2.1
Epoch 2/10
"""


def test_a_running_component_says_how_long_and_the_stage_and_epoch_its_log_is_at():
    line = run_report.progress_line("Trainer", 842, TRAINING_LOG)
    assert line.startswith("  Trainer           running for 14 min 02 s: Whole network: 64 backbone layers train")
    assert line.endswith("... (epoch 2 of 10)")
    assert len(line.split(": ", 1)[1]) == run_report.STAGE_WIDTH + len(" (epoch 2 of 10)")  # the stage cut short
    # A new stage's epochs are not counted yet: the epoch shown is never the stage before's.
    frozen = TRAINING_LOG.split("Stage 1")[0]
    assert run_report.progress_line("Trainer", 200, frozen) == (
        "  Trainer           running for 3 min 20 s: Frozen trunk, train: view 1 of 3 done, 2456 photos, 60 photos/s.")
    # Only its own part of the log: the Tuner's trial is not the Trainer's stage.
    assert run_report.progress_line("Trainer", 30, TRAINING_LOG.split("INFO:absl:Frozen")[0]) == (
        "  Trainer           running for 30 s")
    assert run_report.progress_line("Transform", 150, "Epoch 3/7\n") == "  Transform         running for 2 min 30 s: epoch 3 of 7"


def test_every_stage_announcement_the_progress_line_knows_is_one_the_modules_make():
    sources = "".join(path.read_text() for path in (Path(run_report.__file__).parents[2] / "modules").glob("*.py")
                      if not path.name.endswith("_test.py"))
    for start in run_report.STAGE_ANNOUNCEMENTS:
        assert f'logging.info("{start}' in sources, start

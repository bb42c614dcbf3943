"""What `gemstone run-pipeline` shows of a run: one line per component as it finishes, then what the run made of
its model (the verdict and why, the test figures, the push) and where things are; or, when the run failed, the
component that failed and the end of the log.

Plain text from plain data (metadata.ExecutionRecord, metadata.run_summary's dict, the log's text): no ML
Metadata, no TensorFlow, so that it is tested on its own.
"""
from __future__ import annotations

import os
import re
import signal
from typing import Iterable, List, Optional

from gemstone.apps.metadata import RESOLVER_TYPE, ExecutionRecord

NAME_WIDTH = 18  # the longest node id, ImageExampleGen or ExampleValidator, and a space
LOG_TAIL_LINES = 15
LOG_LINE_WIDTH = 200
# What TFX's LocalDagRunner logs around each node (tfx/orchestration/local/local_dag_runner.py).
_RUNNING = re.compile(r"Component (\S+) is running\.")
_FINISHED = re.compile(r"Component (\S+) is finished\.")
# How the Trainer's and the Tuner's announcements of what they are doing begin (their logging.info lines in
# modules/), and Keras' start of an epoch: what a long-running component shows it is at.
STAGE_ANNOUNCEMENTS = ("Frozen trunk", "Stage ", "Whole network", "Fine-tuning", "Tuner trial", "Calibration",
                       "Open set", "Edge models")
_STAGE = re.compile(r"^INFO:absl:((?:%s).*)$" % "|".join(map(re.escape, STAGE_ANNOUNCEMENTS)))
_EPOCH = re.compile(r"^Epoch (\d+)/(\d+)$")
STAGE_WIDTH = 72  # of a stage's announcement: the progress line stays within a wide terminal's line


def shown(path: Optional[str]) -> str:
    """A path as people read it: relative to the current folder when it is inside it."""
    if not path:
        return "-"
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def is_component(record: ExecutionRecord) -> bool:
    """A component's execution, not a resolver node's (the latest blessed model's look-up)."""
    return record.type_name != RESOLVER_TYPE


def component_line(record: ExecutionRecord) -> str:
    """e.g. "  Trainer           ran in 1 min 26 s", "  Transform         cached"."""
    if record.state == "CACHED":
        what = "cached"
    elif record.state == "COMPLETE":
        what = f"ran in {duration(record.seconds)}"
    else:
        what = f"{record.state.lower()} after {duration(record.seconds)}"
    return f"  {record.component:<{NAME_WIDTH}}{what}"


def _component_part(log_text: str, component: Optional[str]) -> List[str]:
    """The lines of the log from the component's last "Component X is running.", else the whole log's."""
    lines = log_text.splitlines()
    if component is not None:
        marker = f"Component {component} is running."
        starts = [i for i, line in enumerate(lines) if marker in line]
        if starts:
            lines = lines[starts[-1]:]
    return lines


def progress_line(component: str, seconds: float, log_text: str) -> str:
    """A component still running: how long so far, and what its part of the log says it is at, e.g.
    "  Trainer           running for 14 min 02 s: Whole network: 64 backbone layers train ... (epoch 3 of 10)"."""
    stage, epoch = "", ""
    for line in _component_part(log_text, component):
        found = _STAGE.match(line)
        if found:
            stage, epoch = found.group(1), ""  # an epoch counted before this stage was another stage's
            continue
        found = _EPOCH.match(line.strip())
        if found:
            epoch = f"epoch {found.group(1)} of {found.group(2)}"
    if len(stage) > STAGE_WIDTH:
        stage = stage[:STAGE_WIDTH - 3] + "..."
    at = stage + (f" ({epoch})" if epoch else "") if stage else epoch
    return f"  {component:<{NAME_WIDTH}}running for {duration(seconds)}" + (f": {at}" if at else "")


def finished_line(records: Iterable[ExecutionRecord], seconds: float) -> str:
    states = [r.state for r in records if is_component(r)]
    return (f"Finished in {duration(seconds)}: {states.count('COMPLETE')} components ran, "
            f"{states.count('CACHED')} came from the cache.")


def verdict_lines(summary: dict) -> List[str]:
    """Blessed or not, and why: the thresholds it passed, or the reasons it failed."""
    if summary["blessed"] is None:
        return ["Verdict: none: the model was not judged (no blessing recorded)"]
    if not summary["blessed"]:
        reasons = summary["reasons"] or ["(the model card gives no reason: see the log)"]
        return ["Verdict: NOT blessed, so not pushed:"] + [f"  {reason}" for reason in reasons]
    accuracy, floor, drop = summary["accuracy"], summary["accuracy_floor"], summary["max_accuracy_drop"]
    lines = ["Verdict: blessed:"]
    if accuracy is not None:
        lines.append(f"  test accuracy {accuracy:.3f}" + (f", at least {floor:.3f} required" if floor is not None
                                                           else ""))
    allowed = f" (down to {drop:.3f} below it allowed)" if drop is not None else ""
    if summary["compared"] == "baseline":
        baseline = summary["baseline_accuracy"]
        lines.append(f"  against the latest blessed model, {baseline:.3f}: change {accuracy - baseline:+.3f}{allowed}"
                     if baseline is not None and accuracy is not None
                     else f"  no worse than the latest blessed model{allowed}")
    elif summary["compared"] == "itself":
        lines.append("  not compared with itself: the model (the Trainer's, from the cache) is the latest blessed one")
    else:
        lines.append("  no blessed model before it to compare with")
    lines.append("  the robustness and open-set gates passed")
    return lines


def figures_line(summary: dict) -> str:
    if summary["accuracy"] is None:
        return "Test photos: no figures (no model card)"
    top_k = f", top-3 {summary['top_k_accuracy']:.3f}" if summary["top_k_accuracy"] is not None else ""
    return f"Test photos: top-1 accuracy {summary['accuracy']:.3f}{top_k}, on {summary['test_photos']} photos"


def push_line(summary: dict) -> str:
    if summary["already_serving_version"]:
        return f"Not pushed: already serving version {summary['already_serving_version']}"
    if summary["pushed_version"]:
        if summary["pusher_cached"]:  # the same model and blessing as a run before: its push stands
            return f"Not pushed again: an earlier run pushed it as version {summary['pushed_version']}"
        return f"Pushed: version {summary['pushed_version']}"
    if summary["blessed"] is False:
        return "Not pushed: the model was not blessed"
    return "Not pushed"


def summary_lines(pipeline_name: str, summary: dict, log: str, program: str = "gemstone") -> List[str]:
    """Everything after the component lines of a run that finished; `program`: how the user runs `gemstone`."""
    serving = summary["serving_dir"]
    lines = verdict_lines(summary) + [figures_line(summary), push_line(summary), "Where:"]
    lines.append(f"  dashboard:    {shown(summary['dashboard'])}")
    lines.append(f"  model card:   {shown(summary['model_card'])}")
    lines.append(f"  serving dir:  {shown(serving)}")
    if serving and (summary["pushed_version"] or summary["already_serving_version"]):
        lines.append(f"  serve it:     {program} serve --model {shown(serving)}")
    lines.append(f"  whole log:    {shown(log)}")
    lines.append(f"  every run:    {program} runs --pipeline-name {pipeline_name}")
    return lines


def failed_component(records: Iterable[ExecutionRecord], log_text: str) -> Optional[str]:
    """The node that failed: ML Metadata's FAILED execution, else the one the log says started and did not finish
    (a node can fail before TFX records its execution); None when none had started (the tfx CLI failed)."""
    failed = [r.component for r in records if r.state == "FAILED"]
    if failed:
        return failed[-1]
    started = _RUNNING.findall(log_text)
    finished = set(_FINISHED.findall(log_text))
    unfinished = [name for name in started if name not in finished]
    return unfinished[-1] if unfinished else None


def log_tail(log_text: str, component: Optional[str], count: int = LOG_TAIL_LINES) -> List[str]:
    """The last lines of a component's part of the log (from "Component X is running."), else of the whole log;
    each cut to a line's width (Beam's errors repeat the whole traceback on one line)."""
    kept = [line for line in _component_part(log_text, component) if line.strip()][-count:]
    return [line if len(line) <= LOG_LINE_WIDTH else line[:LOG_LINE_WIDTH - 3] + "..." for line in kept]


def failure_lines(component: Optional[str], log_text: str, log: str, seconds: float, status: int = 1) -> List[str]:
    """`status`: the tfx CLI's exit status; negative when a signal ended it (then it could log nothing about it)."""
    where = f"at {component}" if component else "before any component ran (the tfx CLI)"
    if status < 0:
        where += f": the tfx CLI was ended by {signal.Signals(-status).name}, from outside this run"
    return ([f"FAILED {where}, after {duration(seconds)}. The end of its log ({shown(log)}):"]
            + [f"    {line}" for line in log_tail(log_text, component)])

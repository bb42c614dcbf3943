"""Checks of a command's arguments that need neither TensorFlow nor Beam, so a mistake is answered at once.

Loading TensorFlow takes 5-15 s on a small machine, Beam another few: a mistyped
path, pipeline name or option must not wait for them. Each check raises
`UsageError` with one line that says what is wrong and what to do; the command
line prints it and exits with status 2.
"""
from __future__ import annotations

import difflib
import errno
import json
import os
import urllib.parse
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

from gemstone import manifests, paths
from gemstone.text import plural


class UsageError(Exception):
    """A mistake in the command's arguments or inputs: one line, saying what to do."""


class NotFound(UsageError, FileNotFoundError):
    """A path the command was given does not hold what it needs."""


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- Pipelines ----------------------------------------------------------------------------------

def known_pipelines(home: Optional[str] = None) -> List[str]:
    """Pipelines that left anything under GEMSTONE_HOME: metadata, artifacts or pushed models."""
    root = paths.gemstone_home(home)
    names = set()
    for kind in ("metadata", "pipelines", "serving"):
        folder = root / kind
        if folder.is_dir():
            names.update(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    return sorted(names)


def pipeline_name(given: Optional[str], home: Optional[str] = None, need_metadata: bool = False) -> str:
    """The pipeline a command is about: --pipeline-name, else $GEMSTONE_PIPELINE_NAME, else the only one there is.

    Refuses a name no run has left anything for (a typo), and, with `need_metadata`,
    one without an ML Metadata store (it has not run here).
    """
    root = paths.gemstone_home(home)
    known = known_pipelines(home)
    name = given or os.environ.get("GEMSTONE_PIPELINE_NAME", "").strip()
    if not name:
        if len(known) == 1:
            name = known[0]
        elif not known:
            raise UsageError(f"no pipeline has run under {root}: run one (`make demo`, or `make run DATA=... "
                             f"PIPELINE_NAME=...`), or set GEMSTONE_HOME to where one ran")
        else:
            raise UsageError(f"several pipelines under {root} ({', '.join(known)}): say which with --pipeline-name")
    if name not in known:
        where = f"pipelines there: {', '.join(known)}" if known else "none has run there"
        raise UsageError(f"no pipeline {name!r} under {root}{_did_you_mean(name, known)}; {where} "
                         f"(GEMSTONE_HOME chooses the folder)")
    if need_metadata and not paths.metadata_path(name, home).is_file():
        raise UsageError(f"pipeline {name!r} has no metadata at {paths.metadata_path(name, home)}: "
                         f"has it run on this machine? (`make run ... PIPELINE_NAME={name}`)")
    return name


# --- Models -------------------------------------------------------------------------------------

def _model_hint() -> str:
    pushed = [name for name in known_pipelines() if paths.latest_version_dir(paths.serving_dir(name))]
    examples = ", ".join(str(paths.serving_dir(name)) for name in pushed[:3])
    return f"; pushed models here: {examples}" if examples else ""


def model_version(model: str) -> Path:
    """A pushed version folder, or a TF Serving base folder (then its newest numeric version)."""
    path = Path(model)
    if paths.is_version_dir(path):
        return path
    latest = paths.latest_version_dir(path)
    if latest is None:
        what = "no such folder" if not path.exists() else "no SavedModel in it nor in a numeric version folder under it"
        raise NotFound(f"no SavedModel at {path} ({what}): give a pushed version folder or the base folder "
                       f"above it, e.g. .gemstone/serving/<pipeline>{_model_hint()}")
    return latest


def model_base(model: str) -> Path:
    """The TF Serving base folder to serve (a version folder stands for its base); it must hold a version."""
    return model_version(model).parent


# --- Inputs -------------------------------------------------------------------------------------

def input_files(input_spec: str) -> Tuple[List[str], int]:
    """The visible files named by a folder (recursively) or a glob, and how many hidden ones were skipped."""
    import glob as globlib

    from gemstone import images

    if os.path.isdir(input_spec):
        listing = images.list_image_files(input_spec)
        files = sorted(str(p) for p in listing.files + listing.ignored_other)  # non-images become error lines
        hidden = len(listing.ignored_hidden)
        if not files:
            raise NotFound(f"no files under {input_spec}" + (f" ({plural(hidden, 'hidden file')} ignored)"
                                                            if hidden else "")
                           + ": give the folder that holds the photos, or a glob such as 'photos/**/*.jpg'")
        return files, hidden
    if not globlib.has_magic(input_spec) and not os.path.exists(input_spec):
        raise NotFound(f"input folder not found: {input_spec}")
    matches = [p for p in globlib.glob(input_spec, recursive=True) if os.path.isfile(p)]
    visible = [p for p in matches if not images.is_hidden(os.path.basename(p))]
    if not visible:
        raise NotFound(f"no files match {input_spec}")
    return sorted(visible), len(matches) - len(visible)


def photo_files(given: Sequence[str]) -> List[str]:
    """The files named on the command line, folders replaced by the visible files under them (input_files)."""
    files: List[str] = []
    for spec in given:
        if os.path.isdir(spec):
            files.extend(input_files(spec)[0])
        elif os.path.exists(spec):
            files.append(spec)
        else:
            raise NotFound(f"no such photo or folder: {spec}")
    return files


def existing_file(given: str, option: str, what: str) -> Path:
    """A file the command reads; `what` it should be, for the message."""
    path = Path(os.path.expanduser(given))
    if not path.is_file():
        raise NotFound(f"{option} {given}: {'a folder' if path.is_dir() else 'no such file'}; give {what}")
    return path


def manifest_columns(manifest: Path) -> List[str]:
    """The columns a manifest names: the CSV header, or the keys of the first JSON line."""
    try:
        return manifests.columns(manifest)
    except json.JSONDecodeError as e:
        raise UsageError(f"{manifest} line {e.line_number} is not JSON: a .jsonl manifest has one "
                         f'object per line, e.g. {{"path": "Ruby/1.jpg", "label": "Ruby"}}') from None


def data_source(data: str) -> Path:
    """A folder of class folders or a manifest that exists, and a manifest that names `path` and `label`."""
    path = Path(os.path.expanduser(data))
    if path.suffix.lower() in manifests.SUFFIXES:
        if not path.is_file():
            raise NotFound(f"manifest not found: {path}")
        columns = manifest_columns(path)
        missing = [c for c in manifests.REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise UsageError(f"manifest {path} lacks the column{'s' if len(missing) > 1 else ''} "
                             f"{' and '.join(missing)} (it has: {', '.join(columns) or 'nothing'}): its first "
                             f"line must name the columns, e.g. path,label,family,stone_id")
        return path
    if not path.exists():
        raise NotFound(f"data folder not found: {path}")
    if not path.is_dir():
        raise UsageError(f"{path} is neither a folder nor a manifest (.csv or .jsonl)")
    return path


CLASS_FOLDERS_HINT = ("put each photo in a folder named after its variety (e.g. Ruby/IMG_0001.jpg), "
                      "or list the photos in a manifest with path and label columns")


def collection(discovery) -> None:
    """A discovered collection (gemstone.ingestion.Discovery) that holds something to load."""
    if discovery.entries:
        return
    unlabelled = sum(q.reason == "no_label" for q in discovery.quarantined)
    if discovery.layout == "class_folders" and unlabelled:
        raise UsageError(f"{plural(unlabelled, 'photo')} in {discovery.root} but none inside a class folder: "
                         + CLASS_FOLDERS_HINT)
    if discovery.quarantined:
        first = discovery.quarantined[0]
        more = len(discovery.quarantined) - 1
        raise UsageError(f"no entry of {discovery.root} can be used ({first.reason}: {first.detail}"
                         + (f"; and {plural(more, 'other')})" if more else ")"))
    hidden = len(discovery.ignored_hidden)
    raise UsageError(f"no photos in {discovery.root}" + (f" (only {plural(hidden, 'hidden file')})" if hidden else "")
                     + ": " + CLASS_FOLDERS_HINT)


# --- Outputs ------------------------------------------------------------------------------------

def output_folder(given: str, holds: str) -> Path:
    """A folder to write into (made if missing); not an existing file. `holds`: what goes in it, for the message."""
    path = Path(given)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--output {given} is a file: give a folder for {holds}")
    return path


def output_file(given: str, name_in_folder: str) -> Path:
    """The file to write: `given`, or `name_in_folder` inside it when it is a folder (or ends with /)."""
    path = Path(given)
    if path.is_dir() or given.endswith(("/", os.sep)):
        return path / name_in_folder
    if any(parent.exists() and not parent.is_dir() for parent in path.parents):
        raise UsageError(f"--output {given}: a folder of that path is a file")
    return path


# --- Options passed through (Beam) --------------------------------------------------------------

# Beam options people pass most: a near miss of one of these is a typo, refused before Beam loads.
COMMON_BEAM_OPTIONS = ("--runner", "--project", "--region", "--temp_location", "--staging_location", "--job_name",
                       "--direct_running_mode", "--direct_num_workers", "--environment_type", "--flink_master",
                       "--spark_master_url", "--setup_file", "--requirements_file", "--save_main_session",
                       "--num_workers", "--max_num_workers", "--machine_type", "--service_account_email")


def extra_options(extra: Sequence[str], own_options: Iterable[str]) -> None:
    """Refuses extra arguments that are a mistyped option of the command or of Beam, or not options at all.

    The rest are Beam's options, checked by Beam once it is loaded.
    """
    own = list(own_options)
    for arg in extra:
        if not arg.startswith("--"):
            if arg.startswith("-") or not any(e.startswith("--") for e in extra):
                raise UsageError(f"unexpected argument {arg!r}: Beam options are written --name=value")
            continue  # the value of the option before it
        name = arg.split("=", 1)[0]
        normalised = "--" + name[2:].replace("_", "-").lower()
        if normalised in own or name in own:
            raise UsageError(f"unknown option {name}: did you mean {normalised}?")
        close = difflib.get_close_matches(normalised, own, n=1, cutoff=0.8)
        if close:
            raise UsageError(f"unknown option {name}: did you mean {close[0]}?")
        if name not in COMMON_BEAM_OPTIONS:
            close = difflib.get_close_matches(name, COMMON_BEAM_OPTIONS, n=1, cutoff=0.9)
            if close:
                raise UsageError(f"unknown option {name}: did you mean the Beam option {close[0]}?")


# --- Network ------------------------------------------------------------------------------------

def port(number: int) -> int:
    """A TCP port to listen on: 1 to 65535, or 0 (any free port, said when the server starts)."""
    if not 0 <= number <= 65535:
        raise UsageError(f"--port {number} is not a port: give 1 to 65535 (8501 is TF Serving's REST port), "
                         f"or 0 for any free one")
    return number


def port_in_use_message(error: OSError, host: str, port: int) -> Optional[str]:
    """One line for a server socket that could not be bound, or None for other errors."""
    if error.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is in use: stop the server using it, or choose another --port"
    if error.errno == errno.EACCES:
        return f"not allowed to listen on port {port}: ports under 1024 need root; choose another --port"
    if error.errno in (errno.EADDRNOTAVAIL, -2, -3):  # -2/-3: name or service not known (socket.gaierror)
        return f"cannot listen on {host}: not an address of this machine (--host 127.0.0.1 or 0.0.0.0)"
    return None


def endpoint(url: str) -> Tuple[str, int]:
    """(host, port) of an http(s) endpoint."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise UsageError(f"--endpoint {url!r} is not an http(s) URL, e.g. https://kfp.example.com or "
                         f"http://localhost:8080")
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError:
        raise UsageError(f"--endpoint {url!r} has a port that is not a number") from None
    return parsed.hostname, port


def reachable(url: str, timeout: float = 5.0) -> None:
    """Refuses an endpoint nothing answers on (connection refused, unknown host, timeout).

    Skipped behind an HTTP proxy, which may reach what this machine cannot.
    """
    import socket

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")):
        return
    host, port = endpoint(url)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
        raise UsageError(f"cannot reach Kubeflow Pipelines at {url} ({reason}): check --endpoint "
                         f"(and that the cluster's API is forwarded, e.g. kubectl port-forward)") from None


# --- Kubeflow settings --------------------------------------------------------------------------

# What a compiled Kubeflow spec must be told, because this machine's defaults mean nothing in a pod.
KUBEFLOW_SETTINGS = (
    ("GEMSTONE_PIPELINE_NAME", "the pipeline's name, e.g. gem88"),
    ("GEMSTONE_DATA", "the photos as the pods see them, e.g. /mnt/photos/gemstones-88"),
    ("GEMSTONE_PIPELINE_ROOT", "where artifacts go, e.g. gs://my-bucket/pipelines/gem88"),
    ("GEMSTONE_SERVING_DIR", "where models are pushed, e.g. gs://my-bucket/serving/gem88"),
    ("GEMSTONE_IMAGE", "the container image (or --image), e.g. europe-docker.pkg.dev/P/ml/gemstone-pipeline:0.1.0"),
)


def kubeflow_settings(image: Optional[str]) -> None:
    missing = [(name, what) for name, what in KUBEFLOW_SETTINGS
               if not os.environ.get(name, "").strip() and not (name == "GEMSTONE_IMAGE" and image)]
    if missing:
        raise UsageError("a Kubeflow spec needs to know where things are on the cluster, or it would carry this "
                         "machine's paths; set " + "; ".join(f"{name} ({what})" for name, what in missing))


def kubeflow_package(package: str) -> None:
    """A compiled spec: TFX's PipelineJob JSON (or a bare PipelineSpec) naming its pipeline."""
    path = Path(package)
    if not path.is_file():
        raise NotFound(f"no compiled spec at {package}: run `gemstone kubeflow compile --output {package}` first, "
                       f"or leave out --package to compile now")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        document.get("pipelineSpec", document)["pipelineInfo"]["name"]
    except (ValueError, AttributeError, KeyError, TypeError, UnicodeDecodeError):
        raise UsageError(f"{package} is not a pipeline spec written by `gemstone kubeflow compile`") from None


def cron(expression: str) -> None:
    """A cron expression Kubeflow Pipelines reads as meant: every field in its range (gemstone/apps/cron.py)."""
    from gemstone.apps import cron as cron_lib

    try:
        cron_lib.validate(expression)
    except cron_lib.CronError as e:
        raise UsageError(f"--cron {expression!r} is not a cron expression: {e}; five fields, minute (0-59) hour "
                         f"(0-23) day (1-31) month (1-12) weekday (0-6, Sunday 0), e.g. \"0 2 * * *\" (every "
                         f"night at 02:00)") from None

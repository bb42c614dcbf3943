"""The commands that use a pushed model: batch-infer (on Beam), explain, serve (TF Serving's REST API) and drift."""
from __future__ import annotations

import os
from pathlib import Path

from gemstone import contract
from gemstone.apps import checks
from gemstone.apps.commands import NO, OK, USAGE, note
from gemstone.text import plural

BATCH_OPTIONS = ("--model", "--input", "--output", "--batch-size", "--verbose")


def batch_infer(args, beam_args) -> int:
    checks.extra_options(beam_args, BATCH_OPTIONS)
    version = checks.model_version(args.model)
    files, _ = checks.input_files(args.input)
    checks.output_folder(args.output, "predictions-*.jsonl")
    note(f"Classifying {plural(len(files), 'file')} with model {version} (loading Beam and TensorFlow)...")
    from gemstone.apps import batch_infer as batch_infer_lib

    if beam_args:
        batch_infer_lib.check_beam_args(beam_args)
    result = batch_infer_lib.run(str(version), args.input, args.output, beam_args=beam_args or None,
                             batch_size=args.batch_size, progress=True)
    print(f"{plural(result['inputs'], 'file')} ({result['hidden_ignored']} hidden ignored) with model "
          f"{result['model']}:")
    print(f"  {plural(result['predictions'], 'prediction')}, {plural(result['errors'], 'error')}, in "
          f"{result['output']}")
    review = result["review"]
    if review is None:
        print("  note: this model was exported before the open-set outputs: it names a variety for any photo, "
              "gemstone or not (retrain it to get `known` and `review_reason`)")
    else:
        print(f"  {review[contract.NOT_A_GEMSTONE]} not a gemstone photo, {review[contract.UNFAMILIAR_VARIETY]} not a "
              f"variety this model knows, {review[contract.LOW_CONFIDENCE]} low confidence: "
              f"{sum(review.values())} for expert review")
    return OK


def explain(args) -> int:
    from gemstone.apps import explain as explain_lib

    version = checks.model_version(args.model)
    files = checks.photo_files(args.photos)
    missing = explain_lib.missing_explain(version)
    if missing:
        raise checks.UsageError(missing)
    checks.output_folder(args.output, "the figures and records")
    note(f"Explaining {plural(len(files), 'photo')} with model {version} (loading TensorFlow)...")
    result = explain_lib.run(str(version), files, args.output, progress=note)
    errors = result["errors"]
    print(f"{plural(result['explained'], 'photo')} explained with model {result['model']}, {len(errors)} could "
          f"not be read, in {result['output']}")
    for error in errors:
        print(f"  {error['path']}: {error['error']}: {error['detail']}")
    return USAGE if errors else OK


def _api_key(args):
    """The key from --api-key-file, $GEMSTONE_API_KEY or --api-key (which `ps` shows to every user)."""
    if args.api_key_file and args.api_key:
        raise checks.UsageError("give the key once: --api-key-file or --api-key, not both")
    if args.api_key_file:
        try:
            key = Path(args.api_key_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise checks.UsageError(f"cannot read --api-key-file {args.api_key_file}: {e.strerror or e}") from None
        if not key:
            raise checks.UsageError(f"--api-key-file {args.api_key_file} is empty")
        return key
    if args.api_key:
        note("note: a key given as --api-key is visible to every user of this machine (ps); "
              "prefer GEMSTONE_API_KEY or --api-key-file")
    return args.api_key or os.environ.get("GEMSTONE_API_KEY") or None


def _stop_on_signals() -> None:
    """SIGINT (Ctrl-C) and SIGTERM (docker stop, kill, systemd) stop the server: the models are let go of cleanly.

    SIGINT is set explicitly: a process started in the background by a shell (`serve ... &`) inherits
    SIGINT ignored, and Python then leaves it ignored, so the server would not stop on it.
    """
    import signal

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, stop)


def serve(args) -> int:
    checks.port(args.port)
    base = checks.model_base(args.model)
    api_key = _api_key(args)
    from gemstone import paths
    from gemstone.apps import serve as serve_lib

    log_dir = args.log_dir or serve_lib.default_log_dir(str(base))
    try:  # the port first: a busy one is said at once, not after loading TensorFlow
        server = serve_lib.make_server(str(base), args.host, args.port, args.model_name, api_key, log_dir, preload=False,
                                   notice=note, max_in_flight=args.max_in_flight)
    except OSError as e:
        message = checks.port_in_use_message(e, args.host, args.port)
        if message is None:
            raise
        raise checks.UsageError(message) from None
    _stop_on_signals()
    try:
        note(f"Loading version {paths.latest_version_dir(base).name} of {base} (TensorFlow)...")
        server.repository.get()  # before answering: status AVAILABLE means ready, the first predict is fast
        host, port = server.server_address[:2]
        print(f"Serving {base} at http://{host}:{port}/ (TF Serving REST API; "
              f"{'API key required' if api_key else 'no API key'}); prediction log: {log_dir}", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        note("Stopped.")
    finally:
        server.server_close()
        server.repository.release()
    return OK


def drift(args) -> int:
    import json

    from gemstone import paths
    from gemstone.apps import drift as drift_lib

    logs = Path(args.logs)
    if not logs.is_dir():
        raise checks.NotFound(f"log folder not found: {logs} (the prediction log folder of `gemstone serve`, "
                              f"by default $GEMSTONE_HOME/serving-logs/<model>)")
    rows = drift_lib.read_logs(str(logs))
    logged = drift_lib.logged_model(rows)
    name = args.pipeline_name
    if not name:
        # The logs say which model answered; serve names it after its pipeline by default.
        candidates = [n for n in (logged, logs.name) if n and n in checks.known_pipelines()]
        if not candidates:
            raise checks.UsageError(f"which pipeline's training data should {logs} be compared with? The logs are "
                                    f"of model {logged!r}, which is no pipeline here: give --pipeline-name")
        name = candidates[0]
    name = checks.pipeline_name(name, need_metadata=True)
    # Not the current folder by default: a report there ends up in whatever checkout the user stands in.
    output = Path(args.output) if args.output else paths.reports_dir(name) / "drift"
    if output.suffix.lower() != ".json":
        output = output / drift_lib.REPORT_FILE
    if len(rows) >= args.min_predictions:
        note(f"Comparing {plural(len(rows), 'logged prediction')} with pipeline '{name}' (TensorFlow Data "
             f"Validation)...")
    result = drift_lib.check(str(logs), name, min_predictions=args.min_predictions)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1))
    count = result["logged_predictions"]
    print(f"{plural(count, 'logged prediction')} of model {logged!r}, compared with pipeline "
          f"'{name}'; mean confidence {result['mean_confidence']:.3f}, {result['review_rate']:.1%} flagged "
          f"for review")
    if logged and logged != name:
        print(f"note: the logs are of model {logged!r}, not of pipeline '{name}'")
    if not result["judged"]:
        print(f"Too few to judge: drift is judged from {plural(args.min_predictions, 'logged prediction')} "
              f"(--min-predictions). No verdict. Report: {output}")
        return OK
    for finding in result["anomalies"]:
        print(f"  DRIFT {finding['feature']}: {finding['description']}")
    print(("Drift found. " if result["drifted"] else "No drift. ") + f"Report: {output}")
    return NO if result["drifted"] else OK

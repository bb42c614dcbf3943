"""`gemstone`: runs one command of the command line (setup.py's console script, `python -m gemstone.apps.cli`).

The parser, its help and the exit statuses it documents are
gemstone/apps/cli_parser.py; the commands are gemstone/apps/commands/. main
sets up what the process shows, runs the command the arguments name, and turns
what goes wrong into an exit status and one line.
"""
from __future__ import annotations

import os
import sys

# (Keras 2 before TensorFlow loads: the gemstone package, imported with this module, sees to it.)
from gemstone.apps import checks
from gemstone.apps.cli_parser import PRETRAINED_BACKBONES, build_parser  # noqa: F401 - the command line's API
from gemstone.apps.commands import FAILED, INTERRUPTED, NO, OK, USAGE  # noqa: F401 - its exit statuses
from gemstone.apps.commands.models import BATCH_OPTIONS  # noqa: F401 - batch-infer's own options (the rest go to Beam)


def configure_output(verbose: bool, environment: bool = True) -> None:
    """What a run of the program shows: the command's own output, or (verbose) every library's too.

    Quiet, the default: TensorFlow's C++ logs from errors down (the CUDA plugin lines),
    Python warnings (Google client libraries' FutureWarnings on Python 3.10), and
    the Python logs of absl, TensorFlow, Beam, kfp (which logs each failed retry with its
    traceback) are not shown: the command says what went wrong in one line. Set before
    TensorFlow loads; worker processes inherit the environment variables, unless `environment`
    is False: a command whose child processes log to a file of their own (run-pipeline's tfx CLI)
    leaves them the environment it was given.
    """
    import logging
    import warnings

    if verbose:
        if environment:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        return
    if environment:
        if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2") == "2":  # unset, or the Makefile's 2 (still shows CUDA)
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        os.environ.setdefault("PYTHONWARNINGS", "ignore")
    warnings.simplefilter("ignore")
    for name in ("", "absl", "tensorflow", "apache_beam", "tfx"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _dispatch(parser, args, extra) -> int:
    if getattr(args, "takes_extra_args", False):
        return args.func(args, extra)  # e.g. Beam options: --runner=DataflowRunner --project=...
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args.func(args)


def _end_without_finalising(status: int) -> None:
    """Ends the process at once, after flushing what it wrote, without Python's interpreter finalisation.

    The server's request threads ran TensorFlow; its C++ side can take the GIL again as such a thread
    ends. If the interpreter is finalising by then, Python 3.10 ends that thread with pthread_exit,
    which aborts the process ("FATAL: exception not rethrown", exit -6) after a clean stop: seen in
    CI and once by hand. Nothing is lost: the prediction log is closed after every write.
    """
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _is_interruption(error: BaseException) -> bool:
    """Ctrl-C, or an error raised because of it. Beam re-raises a KeyboardInterrupt in a step as
    RuntimeError("KeyboardInterrupt [while running 'Classify/...']"), the original as its context; from a
    worker process only that text arrives."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, KeyboardInterrupt) or str(error).startswith(KeyboardInterrupt.__name__):
            return True
        error = error.__cause__ or error.__context__
    return False


def _interrupted(command: str) -> int:
    print(f"gemstone {command}: interrupted", file=sys.stderr)
    return INTERRUPTED


def main(argv=None) -> int:
    """Runs one command; returns its exit status.

    Run as a program (argv None: the `gemstone` script, `python -m gemstone.apps.cli`), it also
    sets up the process's output (configure_output) and turns an unexpected error into one line
    (the traceback with --verbose). Called with argv (tests), errors other than mistakes propagate.
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    program = argv is None
    verbose = getattr(args, "verbose", False)
    if program:
        configure_output(verbose, environment=not getattr(args, "leaves_environment", False))
    command = " ".join(filter(None, [args.command, getattr(args, "kubeflow_command", None),
                                     getattr(args, "backbone_command", None)]))
    try:
        status = _dispatch(parser, args, extra)
        if program and getattr(args, "ends_without_finalising", False):
            _end_without_finalising(status)
        return status
    except checks.UsageError as e:
        print(f"gemstone {command}: error: {e}", file=sys.stderr)
        return USAGE
    except FileNotFoundError as e:  # a path the library could not find, said in its own words
        print(f"gemstone {command}: error: {e}", file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        return _interrupted(command)
    except BrokenPipeError:
        # The reader went away (`gemstone runs | head`): what it read was right, nothing to say. Python would
        # complain again when it flushes stdout at exit, so stdout points at nothing from here on.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return OK
    except Exception as e:  # noqa: BLE001 - one line for people; the traceback on request
        if _is_interruption(e):
            return _interrupted(command)
        if not program:
            raise
        if verbose:
            import traceback

            traceback.print_exc()
            return FAILED  # not Python's 1, which means "drift found" here
        first = (str(e).strip().splitlines() or [""])[0][:300]
        print(f"gemstone {command}: failed: {type(e).__name__}: {first} (run again with --verbose for the "
              f"traceback)", file=sys.stderr)
        return FAILED


if __name__ == "__main__":
    sys.exit(main())

"""The kubeflow commands: compile the pipeline for Kubeflow Pipelines, and schedule it there."""
from __future__ import annotations

from pathlib import Path

from gemstone.apps import checks
from gemstone.apps.commands import OK, note
from gemstone.text import plural


def kubeflow_compile(args) -> int:
    checks.kubeflow_settings(args.image)
    note("Compiling the pipeline for Kubeflow (loads TFX: about half a minute)...")
    from gemstone.apps import kubeflow

    path = kubeflow.compile_spec(args.output, image=args.image)
    tasks = kubeflow.pipeline_spec(path)["root"]["dag"]["tasks"]
    print(f"Compiled KFP v2 pipeline spec with {plural(len(tasks), 'component')}: {path}")
    return OK


def kubeflow_schedule(args) -> int:
    import tempfile

    checks.cron(args.cron)
    checks.endpoint(args.endpoint)
    if args.package:
        checks.kubeflow_package(args.package)
    else:
        checks.kubeflow_settings(args.image)
    checks.reachable(args.endpoint)
    from gemstone.apps import kubeflow

    package = args.package
    if not package:
        note("Compiling the pipeline for Kubeflow (loads TFX: about half a minute)...")
        package = str(kubeflow.compile_spec(Path(tempfile.mkdtemp()) / "pipeline.json", image=args.image))
    try:
        run = kubeflow.schedule(args.endpoint, package, args.cron, experiment=args.experiment, job_name=args.name)
    except Exception as e:  # noqa: BLE001 - the kfp client's errors: connection, HTTP status, auth
        raise checks.UsageError(f"could not schedule on Kubeflow Pipelines at {args.endpoint}: "
                                f"{_kfp_reason(e)}") from None
    print(f"Recurring run {run.recurring_run_id} ({kubeflow.kfp_cron(args.cron)}) in experiment "
          f"'{args.experiment}' at {args.endpoint}")
    return OK


def _kfp_reason(error: Exception) -> str:
    """One line from the kfp client's exceptions (an ApiException's status, urllib3's innermost reason)."""
    status = getattr(error, "status", None)
    if status in (401, 403):
        return f"HTTP {status}: not authorised (set KFP_TOKEN to a token the endpoint accepts)"
    if status:
        return f"HTTP {status} {getattr(error, 'reason', '')}".strip()
    reason = getattr(error, "reason", None) or error
    text = str(reason).splitlines()[0] if str(reason) else type(reason).__name__
    return text[:200] + " (check --endpoint)"

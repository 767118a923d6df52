"""The KFP endpoint commands: submit a run, schedule and unschedule a recurring run, upload a version.

Each compiles the pipeline (and checks the parameters) before it talks to the endpoint, and fails
fast, naming the port-forward to try, when nothing answers at the host.
"""

from __future__ import annotations

import datetime
import json
import tempfile
import urllib.error
import urllib.request
import warnings
from pathlib import Path

from components.common.images import ImageSet
from components.pipelines.definitions import (
    BUILDERS,
    MONITORING,
    PIPELINE_NAMES,
    TRAINING,
    Overrides,
    check_params,
    compile_pipelines,
)
from components.pipelines.settings import ClusterSettings

DEFAULT_EXPERIMENT = "fashion-drift"
DEFAULT_SCHEDULE_NAME = "fashion-drift-monitoring"
PORT_FORWARD_HINT = "kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80"


class EndpointError(RuntimeError):
    """The KFP endpoint did not answer."""


def check_endpoint(host: str, timeout: float = 5.0) -> None:
    """Fail fast, with the port-forward command to try, when nothing answers at ``host``."""
    url = host.rstrip("/") + "/apis/v2beta1/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # something answered (maybe behind auth); let the client say more
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise EndpointError(
            f"no KFP API answers at {host} ({reason}).\n"
            f"If KFP runs in a cluster (e.g. the kind cluster of `make kind-up`), forward its port first:\n"
            f"    {PORT_FORWARD_HINT}\n"
            f"and pass --host http://localhost:8080"
        ) from exc


def make_client(host: str):
    """A ``kfp.Client`` for ``host``, once something answers there."""
    import kfp

    check_endpoint(host)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return kfp.Client(host=host)


def _compile_to(
    tmp: Path,
    which: str,
    images: ImageSet,
    settings: ClusterSettings,
    params: dict | None,
    overrides: Overrides = None,
) -> Path:
    check_params(BUILDERS[which](images, settings, overrides), params)
    return compile_pipelines(tmp, images, settings, overrides, (which,))[which]


def _utc_stamp() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H-%M-%S")


def upload_version(client, package: Path, name: str, images: ImageSet) -> tuple[str, str]:
    """Register ``package`` as pipeline ``name`` (created if missing) plus a new version; return both ids."""
    pipeline_id = client.get_pipeline_id(name)
    if pipeline_id is None:
        pipeline_id = client.upload_pipeline(str(package), pipeline_name=name).pipeline_id
        versions = client.list_pipeline_versions(pipeline_id, page_size=1, sort_by="created_at desc")
        return pipeline_id, versions.pipeline_versions[0].pipeline_version_id
    version = client.upload_pipeline_version(
        str(package), pipeline_version_name=f"{name} {images.tag} {_utc_stamp()}", pipeline_id=pipeline_id
    )
    return pipeline_id, version.pipeline_version_id


def submit(
    host: str,
    which: str = TRAINING,
    params: dict | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    run_name: str | None = None,
    pipeline_root: str | None = None,
    images: ImageSet | None = None,
    settings: ClusterSettings | None = None,
    wait: bool = False,
    timeout: int = 4 * 3600,
    overrides: Overrides = None,
    upload: bool = False,
) -> tuple[str, str | None]:
    """Start a run of the pipeline (spec sent with the run); return its id and, with ``wait``, its final state.

    With ``upload``, first register the pipeline as a new version (listed in the KFP UI) and run that version.
    """
    images = images or ImageSet()
    with tempfile.TemporaryDirectory() as tmp:
        # Compile (and check the parameters) before talking to the endpoint.
        package = _compile_to(Path(tmp), which, images, settings or ClusterSettings(), params, overrides)
        client = make_client(host)
        if upload:
            pipeline_id, version_id = upload_version(client, package, PIPELINE_NAMES[which], images)
            experiment_id = client.create_experiment(name=experiment).experiment_id
            result = client.run_pipeline(
                experiment_id=experiment_id,
                job_name=run_name or f"{PIPELINE_NAMES[which]} {_utc_stamp()}",
                pipeline_id=pipeline_id,
                version_id=version_id,
                params=params or {},
                pipeline_root=pipeline_root,
            )
        else:
            result = client.create_run_from_pipeline_package(
                str(package),
                arguments=params or {},
                run_name=run_name,
                experiment_name=experiment,
                pipeline_root=pipeline_root,
            )
    if not wait:
        return result.run_id, None
    final = client.wait_for_run_completion(result.run_id, timeout=timeout)
    return result.run_id, final.state


def schedule(
    host: str,
    cron: str,
    params: dict | None = None,
    name: str = DEFAULT_SCHEDULE_NAME,
    experiment: str = DEFAULT_EXPERIMENT,
    pipeline_root: str | None = None,
    catchup: bool = False,
    max_concurrency: int = 1,
    images: ImageSet | None = None,
    settings: ClusterSettings | None = None,
    overrides: Overrides = None,
) -> str:
    """Create a recurring run of the monitoring pipeline; returns its id."""
    if len(cron.split()) not in (5, 6):
        raise ValueError(
            f"--cron {cron!r}: expected 5 or 6 space-separated fields, e.g. '0 0 6 * * *' (06:00 daily)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        package = _compile_to(
            Path(tmp), MONITORING, images or ImageSet(), settings or ClusterSettings(), params, overrides
        )
        client = make_client(host)
        experiment_id = client.create_experiment(name=experiment).experiment_id
        job = client.create_recurring_run(
            experiment_id=experiment_id,
            job_name=name,
            cron_expression=cron,
            max_concurrency=max_concurrency,
            no_catchup=not catchup,
            params=params or {},
            pipeline_package_path=str(package),
            pipeline_root=pipeline_root,
            enabled=True,
        )
    return job.recurring_run_id


def unschedule(
    host: str, name: str | None = DEFAULT_SCHEDULE_NAME, recurring_run_id: str | None = None
) -> list[str]:
    """Disable a recurring run (by id, or every one with that display name); returns the ids disabled."""
    client = make_client(host)
    ids = [recurring_run_id] if recurring_run_id else []
    if not ids:
        flt = json.dumps(
            {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]}
        )
        response = client.list_recurring_runs(page_size=100, filter=flt)
        ids = [r.recurring_run_id for r in (response.recurring_runs or []) if r.display_name == name]
        if not ids:
            raise LookupError(
                f"no recurring run named {name!r} at {host}; list them in the KFP UI or pass --id"
            )
    for rid in ids:
        client.disable_recurring_run(rid)
    return ids

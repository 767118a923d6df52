"""The KFP endpoint commands: submit a run, schedule and unschedule a recurring run, upload a version.

Each compiles the pipeline (and checks the parameters) before it talks to the endpoint, and fails
fast, naming the port-forward to try, when nothing answers at the host.
"""

from __future__ import annotations

import datetime
import json
import tempfile
import time
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
    compile_pipelines,
)
from components.pipelines.params import convert_params
from components.pipelines.settings import ClusterSettings

DEFAULT_EXPERIMENT = "fashion-drift"
DEFAULT_SCHEDULE_NAME = "fashion-drift-monitoring"
PORT_FORWARD_HINT = "kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80"


# Run states (backend/api/v2beta1/run.proto, RuntimeState, at KFP 2.17.0). kfp.Client's
# wait_for_run_completion only knows succeeded/failed/skipped/error: a CANCELED run keeps it
# polling until its timeout. These are the states no run leaves.
FINAL_STATES = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED")
CANCELING = "CANCELING"  # "may only change to SUCCEEDED, FAILED or CANCELED"
CANCELING_GRACE_SECONDS = 300  # how long a CANCELING run is waited for before giving up on it
POLL_SECONDS = 10.0
KFP_UI_HOST_PARAM = "kfp_ui_host"  # the monitoring pipeline's link to the run, filled from --host
CRON_FIELDS = ("second", "minute", "hour", "day-of-month", "month", "day-of-week")


class EndpointError(RuntimeError):
    """The KFP endpoint did not answer."""


class WaitTimeout(TimeoutError):
    """``--wait`` gave up before the run reached a final state (the run goes on in the cluster)."""


def _describe_cron(fields: list[str]) -> str:
    """A few words for the common shapes of a 6-field cron ('06:00 daily'); '' for the rest."""
    second, minute, hour, dom, month, dow = fields
    if second == "0" and minute.isdigit() and dom == month == "*":
        at = f"{int(hour):02d}:{int(minute):02d}" if hour.isdigit() else ""
        if at and dow in ("*", "?"):
            return f"{at} daily"
        if at:
            return f"{at} on days of week {dow}"
        if hour == "*" and dow in ("*", "?"):
            return f"minute {int(minute)} of every hour"
    return ""


def normalize_cron(cron: str) -> tuple[str, str | None]:
    """The cron KFP should get, and a note when it was changed.

    KFP parses schedules with robfig/cron v1.2.0 ``cron.Parse`` (Second | Minute | Hour | Dom |
    Month | DowOptional: backend/src/crd/controller/scheduledworkflow/util/cron_schedule.go,
    backend/src/apiserver/server/api_converter.go), so the FIRST field is seconds and a 5-field
    cron such as ``0 6 * * *`` fires at minute 6 of every hour. A 5-field cron is converted to 6
    fields by prepending ``0`` (the classic reading: ``0 0 6 * * *``, 06:00 daily) and the note
    says so; 6 fields pass unchanged; descriptors (``@daily``, ``@every 1h``) pass unchanged;
    anything else is refused.

    Raises:
        ValueError: not 5 or 6 space-separated fields, nor a descriptor.
    """
    text = " ".join(cron.split())
    if text.startswith("@"):
        return text, None
    fields = text.split(" ") if text else []
    if len(fields) == 6:
        return text, None
    if len(fields) == 5:
        six = "0 " + text
        what = _describe_cron(six.split(" "))
        return six, (
            f"cron {text!r} has 5 fields; KFP reads seconds first: scheduling {six!r}"
            + (f" ({what})" if what else "")
        )
    raise ValueError(
        f"--cron {cron!r}: expected 6 space-separated fields ({' '.join(CRON_FIELDS)}), e.g. "
        "'0 0 6 * * *' (06:00 daily), or 5 classic fields (converted by prepending '0 ')"
    )


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
    host: str | None = None,
) -> tuple[Path, dict]:
    """Compile ``which`` into ``tmp``; returns its path and the run's parameters.

    The parameters are converted to the pipeline's declared types and checked (names, types,
    required ones: :func:`~components.pipelines.params.convert_params`), so the server gets the
    converted values or nothing; ``kfp_ui_host`` is filled with ``host`` when the pipeline takes it
    and it was not given (the notification's link to the run).
    """
    func = BUILDERS[which](images, settings, overrides)
    params = convert_params(func, params)
    if host and KFP_UI_HOST_PARAM in (func.component_spec.inputs or {}) and KFP_UI_HOST_PARAM not in params:
        params[KFP_UI_HOST_PARAM] = host.rstrip("/")
    return compile_pipelines(tmp, images, settings, overrides, (which,))[which], params


def wait_for_run(
    client,  # noqa: ANN001 - a kfp.Client
    run_id: str,
    timeout: float,
    poll: float | None = None,
    canceling_grace: float | None = None,
) -> str:
    """Poll the run until a final state (SUCCEEDED, FAILED, SKIPPED, CANCELED); return it.

    A run seen CANCELING is waited for at most ``canceling_grace`` seconds more (it should end
    CANCELED); then CANCELING is returned. Not ``kfp.Client.wait_for_run_completion``, which does
    not treat CANCELED as final and would poll a cancelled run until its timeout.

    Raises:
        WaitTimeout: no final state within ``timeout`` seconds; the run itself goes on.
    """
    poll = POLL_SECONDS if poll is None else poll
    canceling_grace = CANCELING_GRACE_SECONDS if canceling_grace is None else canceling_grace
    start = time.monotonic()
    canceling_since = None
    state = "UNKNOWN"
    while True:
        state = str(client.get_run(run_id).state or "UNKNOWN").upper()
        now = time.monotonic()
        if state in FINAL_STATES:
            return state
        if state == CANCELING:
            canceling_since = now if canceling_since is None else canceling_since
            if now - canceling_since >= canceling_grace:
                return state
        if now - start >= timeout:
            raise WaitTimeout(
                f"run {run_id} is still {state} after {timeout:g} s of --wait (--timeout); it goes on "
                f"in the cluster: follow it in the KFP UI, or wait longer with a larger --timeout"
            )
        time.sleep(poll)


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
    With ``wait``, poll the run (:func:`wait_for_run`) for at most ``timeout`` seconds.

    Raises:
        WaitTimeout: with ``wait``, the run did not end within ``timeout`` seconds.
    """
    images = images or ImageSet()
    with tempfile.TemporaryDirectory() as tmp:
        # Compile (and check the parameters) before talking to the endpoint.
        package, params = _compile_to(
            Path(tmp), which, images, settings or ClusterSettings(), params, overrides, host
        )
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
    return result.run_id, wait_for_run(client, result.run_id, timeout)


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
    """Create a recurring run of the monitoring pipeline; returns its id.

    ``cron`` goes through :func:`normalize_cron` first (5 fields become 6, and that is printed).
    """
    cron, note = normalize_cron(cron)
    if note:
        print(note)
    with tempfile.TemporaryDirectory() as tmp:
        package, params = _compile_to(
            Path(tmp),
            MONITORING,
            images or ImageSet(),
            settings or ClusterSettings(),
            params,
            overrides,
            host,
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

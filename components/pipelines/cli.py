"""The two pipelines (training, monitoring) and the command line that compiles, runs, submits and schedules them.

python pipeline.py compile [--target cluster|kind] [--registry R] [--tag T] [--gpu-node-key K --gpu-node-value V]
                           [--gpu-limit N] [--arize-secret S] [--webhook-secret S] [--storage-endpoint URL]
python pipeline.py run --local [--pipeline training|monitoring] [--output-dir DIR] [--param name=value ...]
                           [--verbose]
python pipeline.py submit --host URL [--target cluster|kind] [--pipeline training|monitoring]
                           [--pipeline-root minio://mlpipeline/v2/artifacts | gs://BUCKET/PATH]
                           [--param name=value ...] [--upload] [--wait [--timeout S]]
python pipeline.py schedule --host URL --cron "0 0 6 * * *" [--param name=value ...]
python pipeline.py unschedule --host URL [--name NAME | --id ID]
python pipeline.py promote --registry URI --model NAME --version V --reason "..."
python pipeline.py rollback --registry URI --model NAME --reason "..."
python pipeline.py models --registry URI --model NAME [--json]

Exit status: 0 done (with --wait: the run succeeded); 1 the run ended otherwise (failed, cancelled,
skipped); 2 a clear error, printed on stderr; 3 --wait gave up after --timeout (the run goes on).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from components import __version__
from components.common.images import DEFAULT_REGISTRY, ImageSet
from components.pipelines.actuals import ACTUALS, add_actuals_command, run_actuals_command
from components.pipelines.client import (
    DEFAULT_EXPERIMENT,
    DEFAULT_SCHEDULE_NAME,
    EndpointError,
    WaitTimeout,
    normalize_cron,
    schedule,
    submit,
    unschedule,
)
from components.pipelines.definitions import MONITORING, PIPELINES_DIR, ROOT, TRAINING, compile_pipelines
from components.pipelines.params import ParamError, parse_json_or_text
from components.pipelines.registry_cli import COMMANDS as REGISTRY_COMMANDS
from components.pipelines.registry_cli import add_registry_commands, run_registry_command
from components.pipelines.settings import CLUSTER_TARGET, KIND_TARGET, TARGETS, ClusterSettings, settings_for

EXIT_RUN_NOT_SUCCEEDED = 1
EXIT_ERROR = 2
EXIT_WAIT_TIMEOUT = 3
KIND_OUTPUT_DIR = ROOT / "outputs" / "kind"  # compile --target kind: not the golden pipelines/
PIPELINE_ROOT_HELP = (
    "where the run's artifacts go (default: the namespace's kfp-launcher defaultPipelineRoot). "
    "KFP standalone and kind: minio://mlpipeline/v2/artifacts (its SeaweedFS, bucket mlpipeline; the "
    "launcher config of manifests/project points minio:// at it); GKE: gs://BUCKET/PATH; s3://BUCKET/PATH "
    "only with an `s3` provider and endpoint in kfp-launcher (without one the launcher goes to AWS)"
)
PARAM_HELP = (
    "a pipeline parameter, read as its declared type before anything runs or is sent (an Integer "
    "for a Float is converted; true/false/1/0 for a Boolean; a wrong type is refused, exit 2)"
)


def param_texts(items: list[str] | None) -> dict[str, str]:
    """``["num_shards=4", "profile=cluster"]`` -> ``{"num_shards": "4", "profile": "cluster"}`` (as typed).

    The commands pass these texts on: each is read as its parameter's declared type
    (:func:`components.pipelines.params.convert_params`), so ``epochs=1`` is ``1.0`` and
    ``model_version=1.10`` stays ``"1.10"``.

    Raises:
        ParamError: an item is not ``name=value``.
    """
    params = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ParamError(f"--param {item!r}: expected name=value, e.g. --param num_shards=4")
        params[name.strip()] = value
    return params


def parse_params(items: list[str] | None) -> dict:
    """``["num_shards=4", "profile=cluster"]`` -> ``{"num_shards": 4, "profile": "cluster"}`` (JSON values)."""
    return {name: parse_json_or_text(text) for name, text in param_texts(items).items()}


def _add_image_and_cluster_args(p: argparse.ArgumentParser) -> None:
    d = ClusterSettings()
    p.add_argument(
        "--target",
        choices=TARGETS,
        default=CLUSTER_TARGET,
        help=f"{CLUSTER_TARGET}: GPU node pool, requests for the cluster profile; {KIND_TARGET}: small CPU and "
        "memory requests, no GPU, node selector or toleration (the make kind-* targets) (default: %(default)s)",
    )
    p.add_argument("--registry", default=DEFAULT_REGISTRY, help="image registry (default: %(default)s)")
    p.add_argument("--tag", default=__version__, help="image tag (default: the package version, %(default)s)")
    p.add_argument(
        "--gpu-node-key", default=d.gpu_node_key, help="GPU node-pool label key (default: %(default)s)"
    )
    p.add_argument(
        "--gpu-node-value", default=d.gpu_node_value, help="GPU node-pool label value (default: %(default)s)"
    )
    p.add_argument(
        "--gpu-limit",
        type=int,
        default=None,
        help=f"GPUs per train/embed task; 0: no GPU request, node selector or toleration "
        f"(default: {d.gpu_limit}; 0 with --target {KIND_TARGET})",
    )
    p.add_argument(
        "--arize-secret", default=d.arize_secret, help="Secret with api-key, space-id (default: %(default)s)"
    )
    p.add_argument(
        "--webhook-secret",
        default=d.webhook_secret,
        help="Secret with key url: the drift notification's webhook (optional) (default: %(default)s)",
    )
    p.add_argument(
        "--storage-endpoint",
        default=d.storage_endpoint,
        help="AWS_ENDPOINT_URL of the tasks that read or write object storage (prepare, arize, drift, "
        "ingest): an S3 API other than AWS for s3:// URIs (and then minio:// too); without it "
        "minio:// goes to KFP standalone's http://seaweedfs.kubeflow:9000 (optional)",
    )


def _images_and_settings(args) -> tuple[ImageSet, ClusterSettings]:
    overrides = dict(
        gpu_node_key=args.gpu_node_key,
        gpu_node_value=args.gpu_node_value,
        arize_secret=args.arize_secret,
        webhook_secret=args.webhook_secret,
        storage_endpoint=args.storage_endpoint,
    )
    if args.gpu_limit is not None:
        overrides["gpu_limit"] = args.gpu_limit
    return ImageSet(args.registry, args.tag), settings_for(args.target, **overrides)


def build_parser() -> argparse.ArgumentParser:
    """The ``pipeline.py`` command line: compile, run --local, submit, schedule, unschedule."""
    parser = argparse.ArgumentParser(prog="pipeline.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compile", help="write pipelines/training.yaml, monitoring.yaml and actuals.yaml")
    _add_image_and_cluster_args(p)
    p.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help=f"(default: pipelines/; with --target {KIND_TARGET}: outputs/kind/, so the golden YAMLs stay)",
    )

    p = sub.add_parser("run", help="run a pipeline (training by default) on this machine through kfp.local")
    p.add_argument(
        "--local", action="store_true", required=True, help="run through kfp.local (the only mode)"
    )
    p.add_argument(
        "--pipeline",
        choices=(TRAINING, MONITORING),
        default=TRAINING,
        help="(default: training; monitoring needs production_uri, model_uri, baseline_uri)",
    )
    p.add_argument(
        "--output-dir", type=Path, default=ROOT / "outputs", help="pipeline root (default: outputs/)"
    )
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help=PARAM_HELP)
    p.add_argument(
        "--verbose",
        action="store_true",
        help="also print kfp.local's detail (executor inputs, every task's whole log)",
    )

    for command, helptext in (
        ("submit", "upload a pipeline to a KFP endpoint and start a run"),
        ("schedule", "create a recurring run of the monitoring pipeline"),
    ):
        p = sub.add_parser(command, help=helptext)
        p.add_argument("--host", required=True, help="KFP API, e.g. http://localhost:8080")
        p.add_argument("--param", action="append", metavar="NAME=VALUE", help=PARAM_HELP)
        p.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="(default: %(default)s)")
        p.add_argument("--pipeline-root", default=None, help=PIPELINE_ROOT_HELP)
        _add_image_and_cluster_args(p)
        if command == "submit":
            p.add_argument("--pipeline", choices=(TRAINING, MONITORING, ACTUALS), default=TRAINING)
            p.add_argument("--run-name", default=None)
            p.add_argument(
                "--wait",
                action="store_true",
                help="wait for the run to end (SUCCEEDED, FAILED, SKIPPED, CANCELED) and print its state",
            )
            p.add_argument(
                "--upload",
                action="store_true",
                help="register the pipeline and a new version first, then run it",
            )
            p.add_argument(
                "--timeout",
                type=int,
                default=4 * 3600,
                help="seconds --wait waits before giving up (exit 3; the run goes on) (default: %(default)s)",
            )
        else:
            p.add_argument(
                "--cron",
                required=True,
                help="KFP cron, 6 fields with seconds first, e.g. '0 0 6 * * *' (06:00 daily); 5 classic "
                "fields are converted by prepending '0 ' (KFP would read their first field as seconds)",
            )
            p.add_argument("--name", default=DEFAULT_SCHEDULE_NAME, help="(default: %(default)s)")
            p.add_argument("--catchup", action="store_true", help="backfill missed intervals (default: no)")
            p.add_argument("--max-concurrency", type=int, default=1, help="(default: %(default)s)")

    add_actuals_command(sub)
    add_registry_commands(sub)

    p = sub.add_parser("unschedule", help="disable a recurring run")
    p.add_argument("--host", required=True)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--name", default=DEFAULT_SCHEDULE_NAME, help="display name (default: %(default)s)")
    group.add_argument("--id", dest="recurring_run_id", default=None)
    return parser


def _run(args) -> None:
    from components.pipelines.local import run_local  # kfp.local only for this command

    paths = run_local(args.output_dir, param_texts(args.param), which=args.pipeline, verbose=args.verbose)
    print(f"artifacts under {Path(args.output_dir).resolve()}")
    for name, path in paths.items():
        if name not in ("report", "report_artifact"):
            print(f"  {name}: {path}")
    print(f"drift report: {paths['report']}")


def main(argv: list[str] | None = None) -> int:
    """Run one ``pipeline.py`` command; returns the exit status (2: a clear error, printed on stderr)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "compile":
            images, settings = _images_and_settings(args)
            out_dir = args.output_dir or (KIND_OUTPUT_DIR if args.target == KIND_TARGET else PIPELINES_DIR)
            for name, path in compile_pipelines(out_dir, images, settings).items():
                print(f"compiled {name}: {path}")
        elif args.command == ACTUALS:
            return run_actuals_command(args)
        elif args.command in REGISTRY_COMMANDS:
            return run_registry_command(args)
        elif args.command == "run":
            _run(args)
        elif args.command == "submit":
            images, settings = _images_and_settings(args)
            run_id, state = submit(
                args.host,
                args.pipeline,
                param_texts(args.param),
                args.experiment,
                args.run_name,
                args.pipeline_root,
                images,
                settings,
                args.wait,
                args.timeout,
                upload=args.upload,
            )
            print(f"run {run_id} submitted to {args.host}" + (f"; final state: {state}" if state else ""))
            if state and state.upper() != "SUCCEEDED":
                return EXIT_RUN_NOT_SUCCEEDED
        elif args.command == "schedule":
            images, settings = _images_and_settings(args)
            rid = schedule(
                args.host,
                args.cron,
                param_texts(args.param),
                args.name,
                args.experiment,
                args.pipeline_root,
                args.catchup,
                args.max_concurrency,
                images,
                settings,
            )
            cron = normalize_cron(args.cron)[0]
            print(f"recurring run {rid} ({args.name!r}, cron {cron!r}) created at {args.host}")
        elif args.command == "unschedule":
            ids = unschedule(args.host, args.name, args.recurring_run_id)
            print(f"disabled recurring run(s) {', '.join(ids)} at {args.host}")
    except WaitTimeout as exc:
        print(f"pipeline.py {args.command}: {exc}", file=sys.stderr)
        return EXIT_WAIT_TIMEOUT
    except (EndpointError, LookupError, ValueError, RuntimeError) as exc:
        print(f"pipeline.py {args.command}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return 0

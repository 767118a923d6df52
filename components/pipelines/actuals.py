"""The actuals pipeline (late labels): one task that logs them to Arize and updates the drift history.

``fashion-drift-actuals`` takes a file of ``prediction_id, actual_label`` rows that arrived after the
monitoring runs, the prepared folders of those runs and the drift history, and runs the arize
stage's ``log_actuals`` component once (see ``components/arize/README.md``, late labels).

Built like ``definitions.py`` builds the other two (an :class:`ImageSet`, the compile-time
:class:`ClusterSettings`, the task configured as the arize stage: its Secret, the object-store
Secret, retries, never cached). This module does not import ``definitions`` so that ``definitions``
can import it (``BUILDERS``) without a cycle.
"""

# No `from __future__ import annotations`: KFP reads the pipeline function's annotations as objects.

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path

from kfp import compiler, dsl, local
from kfp.dsl import Markdown

from components.arize.actuals_config import ActualsConfig
from components.arize.component import component_actuals
from components.common.config import default_of, help_of, with_args_doc
from components.common.images import ImageSet
from components.pipelines.settings import ClusterSettings, configure
from components.pipelines.stages import ComponentFactory

ACTUALS = "actuals"
PIPELINE_NAME = "fashion-drift-actuals"
PIPELINES_DIR = Path(__file__).resolve().parents[2] / "pipelines"
STAGE = "arize"  # the task's cluster settings: the arize stage's (Arize Secret, storage Secret, retries)
DEFAULTS = {f.name: default_of(f) for f in dataclasses.fields(ActualsConfig)}


def _documented(pipeline_func: Callable) -> Callable:
    """``pipeline_func`` with an ``Args:`` section: each parameter's help from :class:`ActualsConfig`."""
    return with_args_doc(pipeline_func, {f.name: help_of(f) for f in dataclasses.fields(ActualsConfig)})


def build_actuals_pipeline(
    images: ImageSet | None = None,
    settings: ClusterSettings | None = None,
    overrides: Mapping[str, ComponentFactory] | None = None,
):
    """The actuals pipeline: late labels -> Arize actuals and the drift history's accuracy (one task).

    ``overrides`` may replace the component by the name ``actuals`` (tests), as ``Stages`` does.
    """
    settings = settings or ClusterSettings()
    op = dict(overrides or {}).get(ACTUALS, component_actuals)(images or ImageSet())

    def actuals(
        labels_uri: str,
        prepared_uri: str,
        history_uri: str = DEFAULTS["history_uri"],
        arize_model_name: str = DEFAULTS["arize_model_name"],
        model_version: str = DEFAULTS["model_version"],
        require_arize_credentials: bool = DEFAULTS["require_arize_credentials"],
        actuals_chunk_rows: int = DEFAULTS["actuals_chunk_rows"],
        actuals_ledger_uri: str = DEFAULTS["actuals_ledger_uri"],
        resend_uncertain: bool = DEFAULTS["resend_uncertain"],
    ) -> Markdown:
        """Per-run parameters: the labels file, the prepared folders, the history, the Arize model, the ledger."""
        task = op(
            labels_uri=labels_uri,
            prepared_uri=prepared_uri,
            history_uri=history_uri,
            arize_model_name=arize_model_name,
            model_version=model_version,
            require_arize_credentials=require_arize_credentials,
            actuals_chunk_rows=actuals_chunk_rows,
            actuals_ledger_uri=actuals_ledger_uri,
            resend_uncertain=resend_uncertain,
        )
        configure(task, STAGE, settings)  # never cached (arize): a rerun must look at the ledger again
        task.set_display_name("log-actuals")
        return task.outputs["summary"]

    return dsl.pipeline(
        name=PIPELINE_NAME,
        description="Logs late labels (prediction_id, actual_label) to Arize as actuals of the predictions "
        "already sent, and updates the accuracy of the drift history's windows they belong to.",
    )(_documented(actuals))


def compile_actuals_pipeline(
    out_dir: Path = PIPELINES_DIR,
    images: ImageSet | None = None,
    settings: ClusterSettings | None = None,
    overrides: Mapping[str, ComponentFactory] | None = None,
) -> Path:
    """Compile the actuals pipeline into ``out_dir/actuals.yaml`` (written atomically); returns the path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{ACTUALS}.yaml"
    tmp = path.with_name(f".tmp-{path.name}")
    compiler.Compiler().compile(build_actuals_pipeline(images, settings, overrides), str(tmp))
    tmp.replace(path)
    return path


def run_actuals_local(output_dir: Path, params: dict, overrides=None, verbose: bool = False) -> Path:  # noqa: ANN001
    """Run the actuals pipeline through ``kfp.local`` (subprocesses, this environment); the summary's path.

    One line per finished task, as ``run --local`` prints (``verbose``: kfp.local's whole output).
    """
    from components.pipelines.local import reported_tasks  # local imports definitions, which imports this

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(Path(output_dir).resolve()))
    func = build_actuals_pipeline(settings=ClusterSettings(retries=0), overrides=overrides)
    with reported_tasks(func.name, verbose):
        task = func(**params)
    return Path(task.output.path)


def add_actuals_command(sub) -> None:  # noqa: ANN001 - argparse's subparsers action
    """The ``pipeline.py actuals`` command: run the actuals pipeline on this machine through kfp.local."""
    p = sub.add_parser(
        ACTUALS,
        help="log late labels to Arize and update the drift history's accuracy (the actuals pipeline, "
        "through kfp.local; on a cluster: submit --pipeline actuals)",
    )
    p.add_argument("--labels-uri", required=True, help=help_of(_field("labels_uri")))
    p.add_argument("--prepared-uri", required=True, help=help_of(_field("prepared_uri")))
    p.add_argument("--history-uri", default="", help=help_of(_field("history_uri")))
    p.add_argument(
        "--output-dir",
        type=Path,
        default=PIPELINES_DIR.parent / "outputs",
        help="pipeline root (default: outputs/)",
    )
    p.add_argument(
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="another parameter of the actuals pipeline (arize_model_name, actuals_ledger_uri, ...)",
    )
    p.add_argument("--verbose", action="store_true", help="print kfp.local's whole output (each task's log)")


def run_actuals_command(args) -> int:  # noqa: ANN001 - parsed argparse namespace
    """Run ``pipeline.py actuals``: print the summary's path and text; 0 when the run finished."""
    from components.pipelines.params import convert_params

    params = {
        "labels_uri": args.labels_uri,
        "prepared_uri": args.prepared_uri,
        "history_uri": args.history_uri,
    }
    for item in args.param or []:
        name, _, value = item.partition("=")
        params[name.strip()] = value
    params = convert_params(build_actuals_pipeline(), params)
    summary = run_actuals_local(args.output_dir, params, verbose=args.verbose)
    print(f"actuals summary: {summary}")
    print(summary.read_text())
    return 0


def _field(name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(ActualsConfig) if f.name == name)

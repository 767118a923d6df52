"""Run a pipeline on this machine through kfp.local, one progress line per task.

kfp.local 2.17 streams every task's whole log (its executor input as JSON, progress bars, ...) and
logs each task's inputs and outputs: about 2,000 lines for the training pipeline. :func:`run_local`
runs the same kfp.local orchestration but keeps each task's log to itself and prints, as each task
finishes, one line with its time and figures read from its outputs::

    data            2.1s  1,500 rows, 100 degraded
    train            12s  accuracy 0.412

Warnings and errors are printed in full: kfp.local's own (retries included), Python's, and a
failing task's whole log. ``verbose=True`` prints kfp.local's detail as well (what it printed
before).

How: kfp.local runs each task through ``task_dispatcher.run_single_task_implementation``, whose
subprocess handler prints the task's output through ``subprocess_task_handler.run_local_subprocess``
under an indenting ``print`` (``logging_utils.indented_print``) and logs through
``logging_utils.local_logger_context``. :class:`_Reporter` replaces those four names for the length
of a run (kfp is pinned, so they are fixed; a test runs a pipeline through them).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from components.pipelines.definitions import BUILDERS, TRAINING, Overrides
from components.pipelines.params import convert_params
from components.pipelines.settings import ClusterSettings

# Retries are for a cluster's passing failures (a node preempted, an image pull); on this machine a
# failure repeats, so it is shown at once instead of after 60 s and 120 s of back-off.
LOCAL_SETTINGS = ClusterSettings(retries=0)
REPORT_FILE = "drift_report.html"
REGISTRY_PARAM = "registry_uri"
# run --local's model registry when registry_uri is not given: <output-dir>/registry
LOCAL_REGISTRY = "registry"


# --------------------------------------------------------------------------------------------
# Figures of one finished task, read from its outputs
# --------------------------------------------------------------------------------------------
def _metadata(outputs: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(getattr(outputs.get(name), "metadata", None) or {})


def _count(value: Any) -> str:
    return f"{int(value):,}"


def _data(outputs):
    meta = _metadata(outputs, "dataset")
    rows = sum((meta.get("rows") or {}).values())
    degraded = meta.get("degraded") or {}
    parts = [f"{_count(rows)} rows"] if rows else []
    if degraded:
        parts.append(f"{_count(sum(v for k, v in degraded.items() if k != 'none'))} degraded")
    return ", ".join(parts)


def _train(outputs):
    meta = _metadata(outputs, "metrics")
    return f"accuracy {meta['accuracy']:.3f}" if "accuracy" in meta else ""


def _embed(outputs):
    meta = _metadata(outputs, "embeddings")
    if "rows" not in meta:
        return ""
    failures = int(meta.get("failures") or 0)
    return f"{_count(meta['rows'])} rows" + (f", {_count(failures)} failed" if failures else "")


def _prepare(outputs):
    meta = _metadata(outputs, "prepared")
    rows = sum(v for k, v in meta.items() if k.startswith("rows_"))
    if not rows and "rejected" not in meta:
        return ""
    return f"{_count(rows)} rows, {_count(meta.get('rejected') or 0)} rejected"


def _arize(outputs):
    meta = _metadata(outputs, "summary")
    if "sent" not in meta:
        return ""
    rows = sum(v for k, v in meta.items() if k.startswith("rows_sent_"))
    return f"{_count(rows)} rows sent" if meta["sent"] else "nothing sent (no credentials)"


def _drift(outputs):
    meta = _metadata(outputs, "drift_table")
    parts = []
    if "windows" in meta:
        parts.append(f"{_count(meta.get('flagged') or 0)}/{_count(meta['windows'])} windows flagged")
    if isinstance(outputs.get("alert"), bool):
        parts.append(f"alert {outputs['alert']}")
    return ", ".join(parts)


def _resolve_batch(outputs):
    day, uri = outputs.get("batch_date"), outputs.get("batch_uri")
    return f"{day}: {uri}" if isinstance(day, str) and isinstance(uri, str) else ""


def _ingest(outputs):
    meta = _metadata(outputs, "batch")
    if "rows" not in meta:
        return ""
    kind = f" ({meta['source_kind']})" if meta.get("source_kind") else ""
    return f"{_count(meta['rows'])} rows{kind}, {_count(meta.get('rejected') or 0)} kept aside"


def _shard_indices(outputs):
    shards = outputs.get("Output")
    return f"{len(shards)} shard(s)" if isinstance(shards, list) else ""


def _alert_gate(outputs):
    return f"alert {outputs['Output']}" if "Output" in outputs else ""


def _status_gate(outputs):
    return f"status {outputs['Output']}" if "Output" in outputs else ""


def _resolve_model(outputs):
    meta = _metadata(outputs, "model")
    if "source_uri" not in meta:
        return ""
    version = f"model_version {meta['model_version']}, " if meta.get("model_version") else ""
    return f"{version}from {meta['source_uri']}"


def _notice(outputs):
    notice = getattr(outputs.get("notice"), "path", None)
    return f"notice: {notice}" if notice else ""


FIGURES: dict[str, Callable[[dict[str, Any]], str]] = {
    "data": _data,
    "train": _train,
    "embed": _embed,
    "prepare": _prepare,
    "arize": _arize,
    "drift": _drift,
    "resolve-batch": _resolve_batch,
    "ingest": _ingest,
    "shard-indices": _shard_indices,
    "alert-gate": _alert_gate,
    "drift-alert": _notice,
    "status-gate": _status_gate,
    "decision-gate": lambda outputs: f"decision {outputs['Output']}" if "Output" in outputs else "",
    # the training pipeline's gate: its promote branch's task is created first, the candidate's second
    "register-model": lambda o: f"{o['Output']} promoted to production" if "Output" in o else "",
    "register-model-2": lambda o: f"{o['Output']} registered as a candidate" if "Output" in o else "",
    "start-retraining": lambda o: (
        (f"run {o['Output']}" if o["Output"] else "not started (alert not confirmed)")
        if "Output" in o
        else ""
    ),
    "insufficient-data": _notice,
    "resolve-model": _resolve_model,
}
"""Task name -> its figures (an empty string when its outputs lack them, e.g. a stand-in stage)."""


def task_figures(task: str, outputs: dict[str, Any]) -> str:
    """The figures of a finished task (rows, accuracy, flagged windows ...) from its outputs."""
    figures = FIGURES.get(task)
    return figures(outputs) if figures else ""


PYTHON_WARNING = re.compile(r"^\S.*:\d+: \w*Warning: ")  # what warnings.showwarning writes
# A logged warning or error: logging's default format, or the one kfp's executor sets up in a task
# ("[KFP Executor 2026-11-28 12:00:00,000 WARNING]: ...").
LOGGED_PROBLEM = re.compile(r"^(?:\[[^\]]*\s)?(WARNING|ERROR|CRITICAL)[\]:\s]")


def task_warnings(lines: list[str]) -> list[str]:
    """The warnings and errors in a task's log, to print in full after its progress line.

    Python's warnings (with the source line shown under each) and logged WARNING/ERROR/CRITICAL
    records.
    """
    found: list[str] = []
    in_warning = False
    for line in lines:
        text = line.rstrip("\n")
        if PYTHON_WARNING.match(text) or LOGGED_PROBLEM.match(text):
            found.append(text)
            in_warning = bool(PYTHON_WARNING.match(text))
        elif in_warning and text.startswith("  "):
            found.append(text)  # the source line warnings shows under a warning
        else:
            in_warning = False
    return found


def _seconds(elapsed: float) -> str:
    return f"{elapsed:.1f}s" if elapsed < 10 else f"{elapsed:.0f}s"


def progress_line(label: str, elapsed: float, figures: str) -> str:
    """``data            2.1s  1,500 rows``: one finished task."""
    return f"{label:<13} {_seconds(elapsed):>6}  {figures}".rstrip()


# --------------------------------------------------------------------------------------------
# The hooks into kfp.local
# --------------------------------------------------------------------------------------------
@dataclass
class _Task:
    name: str
    label: str
    started: float = field(default_factory=time.monotonic)
    lines: list[str] = field(default_factory=list)
    returncode: int | None = None


class _QuietFilter(logging.Filter):
    """Let kfp.local's warnings, errors and notices of a retry through; not its per-task detail.

    Nor its "Task ... finished with status FAILURE": the reporter prints the failure with the task's log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Task ") and " finished with status " in message:
            return False
        return record.levelno >= logging.WARNING or "Retrying in" in message


class _Reporter:
    """Runs kfp.local's tasks with their logs kept, and prints one line per finished task."""

    def __init__(self, verbose: bool, out: TextIO, err: TextIO) -> None:
        self.verbose = verbose
        self.out = out
        self.err = err
        self.lock = threading.Lock()
        self.current = threading.local()

    def _write(self, stream: TextIO, text: str) -> None:
        with self.lock:
            stream.write(text)
            stream.flush()

    def run_subprocess(self, full_command: list[str], env_vars: dict[str, str] | None = None) -> int:
        """kfp.local's ``run_local_subprocess``, keeping the task's output instead of printing it."""
        task: _Task | None = getattr(self.current, "task", None)
        env = {**os.environ, **env_vars} if env_vars else None
        with subprocess.Popen(
            full_command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
        ) as process:
            assert process.stdout is not None  # stdout=PIPE
            for line in iter(process.stdout.readline, ""):
                if task is not None:
                    task.lines.append(line)
                if self.verbose or task is None:
                    self._write(self.out, "    " + line)
            code = process.wait()
        if task is not None:
            task.returncode = code
        return code

    def wrap_task(self, run_task: Callable[..., Any]) -> Callable[..., Any]:
        """``run_single_task_implementation`` that reports each task when it ends."""

        def run(**kwargs):
            from kfp.local import executor_input_utils, status

            name = executor_input_utils.get_local_task_resource_name(kwargs["component_name"])
            task = _Task(name, _label(name, kwargs.get("arguments") or {}))
            self.current.task = task
            try:
                outputs, task_status = run_task(**kwargs)
            finally:
                self.current.task = None
            elapsed = time.monotonic() - task.started
            if task_status == status.Status.SUCCESS:
                self._write(self.out, progress_line(task.label, elapsed, task_figures(name, outputs)) + "\n")
                if not self.verbose:  # verbose printed the whole log already
                    self._write(self.err, "".join(f"{task.label}: {w}\n" for w in task_warnings(task.lines)))
            else:
                self._write(self.err, _failure(task, elapsed))
            return outputs, task_status

        return run

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """kfp.local's hooks replaced by this reporter's, for the length of a run."""
        from kfp.local import logging_utils, placeholder_utils, subprocess_task_handler, task_dispatcher

        with contextlib.ExitStack() as stack:
            original_resolve = placeholder_utils.resolve_individual_placeholder
            stack.enter_context(
                _replaced(
                    placeholder_utils,
                    "resolve_individual_placeholder",
                    _without_schedule_time(original_resolve),
                )
            )
            stack.enter_context(
                _replaced(subprocess_task_handler, "run_local_subprocess", self.run_subprocess)
            )
            # The task's lines are written here, indented, without swapping builtins.print (tasks in
            # parallel threads restore each other's swapped print, and one stays installed).
            stack.enter_context(_replaced(logging_utils, "indented_print", _no_indent))
            original = task_dispatcher.run_single_task_implementation
            stack.enter_context(
                _replaced(task_dispatcher, "run_single_task_implementation", self.wrap_task(original))
            )
            if not self.verbose:
                stack.enter_context(_replaced(logging_utils, "local_logger_context", contextlib.nullcontext))
                stack.enter_context(_replaced(logging_utils, "print_horizontal_line", lambda: None))
                stack.enter_context(_quiet_logging(self.err))
            yield


SCHEDULE_TIME_PLACEHOLDER = (
    "{{$.pipeline_job_schedule_time_utc}}"  # dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER
)


def _without_schedule_time(resolve: Callable[..., str]) -> Callable[..., str]:
    """kfp.local's placeholder resolver, with the schedule-time placeholder resolved to "".

    kfp.local 2.17 does not know ``{{$.pipeline_job_schedule_time_utc}}``: it reads it as an input
    placeholder and fails with "list index out of range" (even inside the executor input's JSON). A
    local run has no schedule: the task gets "", which the monitoring pipeline's resolve-batch reads
    as "no schedule time" (today's date). On a cluster the driver replaces it with the scheduled
    time (only as a whole value, backend/src/v2/driver/resolve.go).
    """

    def resolve_individual_placeholder(element: str, *args: Any, **kwargs: Any) -> str:
        return resolve(element.replace(SCHEDULE_TIME_PLACEHOLDER, ""), *args, **kwargs)

    return resolve_individual_placeholder


def _label(name: str, arguments: dict[str, Any]) -> str:
    """``embed 2/4`` for a shard of a fan-out, else the task's name."""
    shards = int(arguments.get("num_shards") or 1)
    if "shard_index" in arguments and shards > 1:
        return f"{name} {int(arguments['shard_index']) + 1}/{shards}"
    return name


def _failure(task: _Task, elapsed: float) -> str:
    code = f" (exit status {task.returncode})" if task.returncode is not None else ""
    log = "".join("    " + line for line in task.lines)
    if log and not log.endswith("\n"):
        log += "\n"
    return f"{task.label} FAILED after {_seconds(elapsed)}{code}; its log:\n{log}"


@contextlib.contextmanager
def _no_indent(num_spaces: int = 4) -> Iterator[None]:
    yield


@contextlib.contextmanager
def _replaced(owner: object, name: str, value: object) -> Iterator[None]:
    if not hasattr(owner, name):  # kfp changed: say so rather than run with the full output
        raise RuntimeError(f"kfp.local has no {getattr(owner, '__name__', owner)}.{name}; check the kfp pin")
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


@contextlib.contextmanager
def _quiet_logging(stream: TextIO) -> Iterator[None]:
    """The root logger at INFO with one handler that lets only warnings, errors and retries through."""
    root = logging.getLogger()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    handler.addFilter(_QuietFilter())
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def reported_tasks(
    name: str, verbose: bool = False, out: TextIO | None = None, err: TextIO | None = None
) -> Iterator[None]:
    """The pipeline ``name`` run inside reports one line per finished task (``verbose``: kfp.local's detail).

    Warnings and a failing task's log go to ``err`` (default: stderr), the lines to ``out`` (stdout).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    if not verbose:
        out.write(f"{name}: running each task through kfp.local (--verbose: their logs)\n")
    reporter = _Reporter(verbose, out, err)
    with warnings.catch_warnings(), reporter.installed():
        # The local runner ignores cluster settings and uses this environment instead of the images:
        # both are expected here, and each task would warn about them.
        warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
        warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
        yield


def run_local(
    output_dir: Path,
    params: dict | None = None,
    overrides: Overrides = None,
    which: str = TRAINING,
    verbose: bool = False,
    settings: ClusterSettings = LOCAL_SETTINGS,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> dict[str, str]:
    """Run a pipeline (training by default) through kfp.local in this environment.

    Prints one line per finished task on ``out`` (default: stdout), warnings and errors on ``err``
    (default: stderr); ``verbose`` adds kfp.local's detail. Returns the paths of the pipeline's
    output artifacts (and ``alert``, ``status`` for monitoring); ``report`` is a copy of the drift
    report named ``drift_report.html`` beside the run's task folders. A pipeline that takes
    ``registry_uri`` gets ``<output_dir>/registry`` when it is not given (the local model registry).
    """
    from kfp import local

    out = out or sys.stdout
    err = err or sys.stderr
    pipeline_func = BUILDERS[which](settings=settings, overrides=overrides)
    # Names, declared types (an int for a Float becomes a float) and required inputs (the
    # monitoring URIs), before anything is created or run: kfp.local would raise a traceback.
    params = convert_params(pipeline_func, params)
    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    if REGISTRY_PARAM in (pipeline_func.component_spec.inputs or {}) and REGISTRY_PARAM not in params:
        # The local loop is whole: the first run's model is promoted, a later run's is gated against it.
        params[REGISTRY_PARAM] = str(output_dir / LOCAL_REGISTRY)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(output_dir))
    with reported_tasks(pipeline_func.name, verbose, out, err):
        task = pipeline_func(**params)
    paths = {name: getattr(value, "path", value) for name, value in task.outputs.items()}
    # The HTML artifact is a file named "report"; a copy named .html opens in any browser.
    report = Path(paths["report"])
    readable = report.parent.parent / REPORT_FILE
    shutil.copyfile(report, readable)
    paths["report"] = str(readable)
    paths["report_artifact"] = str(report)
    return paths

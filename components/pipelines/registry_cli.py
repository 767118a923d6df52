"""The model registry's commands: ``pipeline.py promote``, ``rollback`` and ``models``.

python pipeline.py promote  --registry URI --model NAME --version V --reason "..."
python pipeline.py rollback --registry URI --model NAME --reason "..."
python pipeline.py models   --registry URI --model NAME [--json]

Each change is one event in the registry's log (:mod:`components.common.registry`), recorded with
who made it (``$REGISTRY_ACTOR``, else ``user@host``), when (UTC) and the reason. The object store's
endpoint and credentials come from the environment, as for the stages (``STORAGE_EMULATOR_HOST``,
``AWS_ENDPOINT_URL``, ``MINIO_ENDPOINT_URL``, the clients' own credentials).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from components.common import registry

PROMOTE, ROLLBACK, MODELS = "promote", "rollback", "models"
COMMANDS = (PROMOTE, ROLLBACK, MODELS)
REGISTRY_HELP = (
    "the model registry's folder: a local folder, gs://BUCKET/PATH, s3://BUCKET/PATH or "
    "minio://mlpipeline/PATH (the training pipeline's registry_uri)"
)


def add_registry_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``promote``, ``rollback`` and ``models`` to ``pipeline.py``'s sub-commands."""
    for command, text in (
        (PROMOTE, "move a model's production pointer to a registered version (recorded: who, when, why)"),
        (ROLLBACK, "move a model's production pointer back to the version in production before"),
        (MODELS, "list a model's versions, the one in production and every change"),
    ):
        p = sub.add_parser(command, help=text, description=text)
        p.add_argument("--registry", required=True, help=REGISTRY_HELP)
        p.add_argument("--model", required=True, help="the model's name in the registry")
        if command == PROMOTE:
            p.add_argument("--version", required=True, help="the version to put in production, e.g. v3")
        if command in (PROMOTE, ROLLBACK):
            p.add_argument("--reason", required=True, help="why (recorded with the change)")
        else:
            p.add_argument("--json", action="store_true", help="print the versions and changes as JSON")


def _quoted(text: str) -> str:
    """Text from the registry on one terminal line: quoted, control characters escaped."""
    return json.dumps(text, ensure_ascii=False)


def _short_metrics(metrics: dict[str, Any]) -> str:
    """The headline figures of a version's metrics: validation accuracy and F1 when recorded."""
    training = metrics.get("training") if isinstance(metrics.get("training"), dict) else metrics
    parts = []
    for key in ("accuracy", "f1_macro"):
        value = training.get(key) if isinstance(training, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(f"{key} {value:.4f}")
    return ", ".join(parts) or "-"


def describe(reg: registry.Registry) -> str:
    """The ``models`` listing: production, the versions and the change log, as text."""
    versions, history = reg.versions(), reg.history()
    production = next((v for v in versions if v.stage == registry.PRODUCTION), None)
    lines = [f"model {_quoted(reg.model_name)} in {reg.location} ({len(history)} changes)"]
    lines.append(
        f"production: {production.version} ({production.model_uri})" if production else "production: none"
    )
    lines.append("versions:")
    if not versions:
        lines.append("  (none registered)")
    for v in versions:
        lines.append(
            f"  {v.version:<6} {v.stage:<10} {v.created}  {_short_metrics(v.metrics):<34} "
            f"run {_quoted(v.run or '-')}  {v.model_uri}"
        )
    lines.append("changes:")
    for e in history:
        was = f" (was {e.previous or 'none'})" if e.action != registry.REGISTER else ""
        what = f"{e.action} {e.version}{was}"
        lines.append(f"  #{e.seq} {e.when} {what} by {_quoted(e.who)}: {_quoted(e.reason)}")
    return "\n".join(lines)


def as_json(reg: registry.Registry) -> str:
    """The ``models --json`` listing."""
    from dataclasses import asdict

    versions = reg.versions()
    production = next((v.version for v in versions if v.stage == registry.PRODUCTION), None)
    return json.dumps(
        {
            "model": reg.model_name,
            "location": reg.location,
            "production": production,
            "versions": [asdict(v) for v in versions],
            "history": [asdict(e) for e in reg.history()],
        },
        indent=2,
    )


def run_registry_command(args: argparse.Namespace) -> int:
    """Run ``promote``, ``rollback`` or ``models``; 0 when done, 2 with the reason on stderr."""
    try:
        reg = registry.open_registry(args.registry, args.model)
        if args.command == PROMOTE:
            before = reg.production()
            v = reg.promote(args.version, args.reason)
            was = f" (was {before.version})" if before else ""
            print(f"{reg.model_name}: {v.version} is in production{was}: {v.model_uri}")
        elif args.command == ROLLBACK:
            before = reg.production()
            v = reg.rollback(args.reason)
            was = f" (was {before.version})" if before else ""
            print(f"{reg.model_name}: rolled back to {v.version}{was}: {v.model_uri}")
        else:
            print(as_json(reg) if args.json else describe(reg))
    except (registry.RegistryError, OSError) as exc:
        message = str(exc).removeprefix(f"{args.command}: ")
        print(f"pipeline.py {args.command}: {message}", file=sys.stderr)
        return 2
    return 0

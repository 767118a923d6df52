"""One typed Config per stage is the single source of its parameters.

A stage's Config is a dataclass whose fields are declared with :func:`param` (a default and a help
text). Everything else is derived from it:

- the stage's command line (:func:`add_config_arguments`, :func:`config_from_args`), as transformers'
  ``HfArgumentParser`` does;
- the KFP component's docstring, whose ``Args:`` section the KFP UI shows for every input
  (:func:`component_doc`, applied by ``images.build_component``);
- the component body's Config (:func:`config_from`, called on the body's ``locals()``);
- the pipelines' parameter defaults (``DriftConfig().false_alarm_rate`` and so on).

The component function itself keeps a literal signature, because KFP ships its source text into the
stage's image and calls it there; ``tests/test_stage_configs.py`` checks that every component, its
command line and its Config agree (names, types, defaults), so a parameter cannot drift between them.

A field with ``component=False`` is a setting of the command line only (threads, device, ...): the
pipelines never pass it and the component does not take it.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import types
import typing
from collections.abc import Callable, Collection, Mapping
from typing import Any

HELP = "help"
COMPONENT = "component"
CHOICES = "choices"


def param(
    default: Any = dataclasses.MISSING,
    help: str = "",  # noqa: A002 - the name argparse and HfArgumentParser use
    *,
    component: bool = True,
    choices: tuple[Any, ...] | None = None,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A Config field with its help text; ``component=False``: a command-line-only setting."""
    if not help:
        raise ValueError("param(): every stage parameter needs a help text")
    metadata = {HELP: help, COMPONENT: component, CHOICES: choices}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


# The model-running settings embed and evaluate share (command line only; see components/common/inference.py).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def threads_param() -> Any:
    """The ``threads`` field of a stage that runs the model."""
    return param(0, "torch CPU threads (0 = half the cores)", component=False)


def device_param() -> Any:
    """The ``device`` field of a stage that runs the model."""
    return param("", "cpu, cuda, cuda:1 ... ('' = cuda when there is one)", component=False)


def precision_param() -> Any:
    """The ``precision`` field of a stage that runs the model."""
    return param(
        "auto",
        "autocast precision on CUDA (auto: bf16, else fp16; CPU: fp32)",
        component=False,
        choices=PRECISIONS,
    )


def json_object(text: str, setting: str, example: str) -> dict[str, Any]:
    """A setting that holds a JSON object (``""`` = ``{}``); a ValueError names ``setting`` and gives ``example``."""
    try:
        value = json.loads(text or "{}")
    except ValueError as exc:
        raise ValueError(f"{setting}: not JSON ({exc}); give a JSON object such as {example}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"{setting}: expected a JSON object, got {type(value).__name__}")
    return value


def _fields(config_cls: type) -> tuple[dataclasses.Field[Any], ...]:
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"{config_cls!r} is not a dataclass")
    return dataclasses.fields(config_cls)


def field_types(config_cls: type) -> dict[str, type]:
    """Each field's real type (``int | None`` -> int), with string annotations resolved."""
    hints = typing.get_type_hints(config_cls)
    out = {}
    for f in _fields(config_cls):
        kind = hints[f.name]
        if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
            args = [a for a in typing.get_args(kind) if a is not type(None)]
            kind = args[0]
        out[f.name] = kind
    return out


def default_of(f: dataclasses.Field[Any]) -> Any:
    """A field's default (its factory called), or ``dataclasses.MISSING`` when it has none."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def help_of(f: dataclasses.Field[Any]) -> str:
    """A field's help text (``param(..., help)``)."""
    return str(f.metadata.get(HELP, ""))


def component_fields(config_cls: type) -> tuple[dataclasses.Field[Any], ...]:
    """The fields a KFP component takes (all but ``component=False``)."""
    return tuple(f for f in _fields(config_cls) if f.metadata.get(COMPONENT, True))


def flag(name: str) -> str:
    """The command-line option of a field: ``drift_window`` -> ``--drift-window``."""
    return "--" + name.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser, config_cls: type) -> None:
    """One option per Config field: ``--false-alarm-rate``, typed, with its default and help."""
    kinds = field_types(config_cls)
    for f in _fields(config_cls):
        default = default_of(f)
        text = help_of(f)
        kind = kinds[f.name]
        if kind is bool:
            parser.add_argument(
                flag(f.name),
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=f"{text} (default: {default})",
            )
            continue
        parser.add_argument(
            flag(f.name),
            dest=f.name,
            type=kind if kind in (int, float, str) else str,
            default=default,
            required=default is dataclasses.MISSING,
            choices=f.metadata.get(CHOICES),
            help=f"{text} (default: {default!r})" if default is not dataclasses.MISSING else text,
        )


def config_from(config_cls: type, values: Mapping[str, Any]) -> Any:
    """The Config built from the entries of ``values`` that are its fields.

    ``values``: a component's ``locals()``, an argparse namespace's ``vars()``; other entries
    (artifacts, output paths) are ignored.
    """
    names = {f.name for f in _fields(config_cls)}
    return config_cls(**{k: v for k, v in values.items() if k in names})


def config_from_args(config_cls: type, args: argparse.Namespace) -> Any:
    """The Config built from parsed command-line arguments (``config_from`` of their ``vars()``)."""
    return config_from(config_cls, vars(args))


def component_doc(
    summary: str, config_cls: type, artifacts: Mapping[str, str], outputs: Collection[str] = ()
) -> str:
    """A Google-style docstring: ``summary``, ``Args:`` for the inputs, ``Returns:`` for the outputs.

    ``artifacts`` maps each artifact (and named return value) to its help; those named in ``outputs``
    go under ``Returns:``, the rest and every component field of the Config under ``Args:``. KFP parses
    both sections (``docstring_parser``) into the descriptions that the KFP UI shows.
    """
    lines = [summary.strip(), "", "Args:"]
    lines += [f"    {name}: {text}" for name, text in artifacts.items() if name not in outputs]
    lines += [f"    {f.name}: {help_of(f)}" for f in component_fields(config_cls)]
    returned = [f"    {name}: {text}" for name, text in artifacts.items() if name in outputs]
    if returned:
        lines += ["", "Returns:", *returned]
    return "\n".join(lines) + "\n"


def with_args_doc(func: Callable[..., Any], helps: Mapping[str, str]) -> Callable[..., Any]:
    """``func`` (a pipeline function) with an ``Args:`` section added to its docstring: each parameter's help.

    KFP reads it into each pipeline input's description, which the KFP UI shows. A parameter
    missing from ``helps`` raises a ValueError naming it.
    """
    names = list(inspect.signature(func).parameters)
    missing = [n for n in names if n not in helps]
    if missing:
        raise ValueError(f"pipeline parameter(s) {', '.join(missing)} of {func.__name__} have no help text")
    args = [f"    {name}: {helps[name]}" for name in names]
    func.__doc__ = "\n".join([inspect.cleandoc(func.__doc__ or ""), "", "Args:", *args]) + "\n"
    return func


def output_names(func: Callable[..., Any]) -> tuple[str, ...]:
    """The outputs of a component body: its ``Output[...]`` parameters and its NamedTuple's fields."""
    from kfp.dsl.types import type_annotations

    sig = inspect.signature(func)
    names = [
        n for n, p in sig.parameters.items() if type_annotations.is_artifact_wrapped_in_Output(p.annotation)
    ]
    returned = sig.return_annotation
    names += list(getattr(returned, "_fields", ()))
    return tuple(names)


def signature_mismatches(func: Callable[..., Any], config_cls: type, artifacts: tuple[str, ...]) -> list[str]:
    """Where a component's literal signature and its Config disagree (empty when they agree)."""
    sig = inspect.signature(func)
    hints = typing.get_type_hints(func)
    kinds = field_types(config_cls)
    params = {n: p for n, p in sig.parameters.items() if n not in artifacts}
    wanted = {f.name: f for f in component_fields(config_cls)}
    problems = []
    for name in sorted(set(wanted) - set(params)):
        problems.append(f"{func.__name__}: Config field {name!r} is not a component parameter")
    for name in sorted(set(params) - set(wanted)):
        problems.append(f"{func.__name__}: parameter {name!r} is not a field of {config_cls.__name__}")
    for name in sorted(set(wanted) & set(params)):
        default = default_of(wanted[name])
        got = params[name].default
        if got is inspect.Parameter.empty:
            got = dataclasses.MISSING
        if got != default or type(got) is not type(default):
            problems.append(f"{func.__name__}.{name}: default {got!r} != Config's {default!r}")
        if hints.get(name) is not kinds[name]:
            problems.append(f"{func.__name__}.{name}: type {hints.get(name)} != Config's {kinds[name]}")
    return problems

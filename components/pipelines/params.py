"""A run's parameters, converted to and checked against the types the compiled pipeline declares.

``pipeline.py run --local``, ``submit`` and ``schedule`` pass every ``--param`` through
:func:`convert_params` before anything runs or is sent: kfp.local refuses an ``int`` for a
``Float`` input with a traceback (``InconsistentTypeException``), and the KFP server takes any
JSON value and fails the run later. The declared types are the pipeline function's
``component_spec.inputs[name].type``: kfp 2.17 writes ``String``, ``Integer``, ``Float``,
``Boolean``, ``List`` and ``Dict`` there (``kfp.dsl.types.type_utils._TYPE_TO_TYPE_NAME``); the
IR names (``NUMBER_DOUBLE``, ``NUMBER_INTEGER``, ``STRUCT``, ...) are read as well.

What is converted: text read per declared type (``--param epochs=1`` is ``1.0``, ``--param
model_version=1.10`` stays ``"1.10"``), an ``int`` for a ``Float``, a whole ``float`` for an
``Integer`` (``2.0`` is ``2``), ``true``/``false``/``1``/``0`` (any case) for a ``Boolean``. What is
refused, with one line naming the parameter, the value, the type and an example (:class:`ParamError`):
a fraction for an ``Integer``, text that is not a number for a number, a non-finite number, anything
else for a ``Boolean``, text that is not a JSON list or object for a ``List`` or ``Dict``, a name
the pipeline does not take, and a required parameter left out or empty.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

STRING, INTEGER, FLOAT, BOOLEAN, LIST, DICT = "String", "Integer", "Float", "Boolean", "List", "Dict"

# Every spelling of a parameter type kfp uses (component specs, IR, the v1 names), lower-cased.
_TYPE_NAMES = {
    "string": STRING,
    "str": STRING,
    "text": STRING,
    "integer": INTEGER,
    "int": INTEGER,
    "number_integer": INTEGER,
    "float": FLOAT,
    "double": FLOAT,
    "number_double": FLOAT,
    "boolean": BOOLEAN,
    "bool": BOOLEAN,
    "list": LIST,
    "jsonarray": LIST,
    "dict": DICT,
    "struct": DICT,
    "jsonobject": DICT,
}

# What each type is, in words, and a value to show when the parameter's default is no example.
_WORDS = {
    STRING: ("a String", "text", "some-text"),
    INTEGER: ("an Integer", "a whole number", "3"),
    FLOAT: ("a Float", "a number", "0.5"),
    BOOLEAN: ("a Boolean", "true, false, 1 or 0", "true"),
    LIST: ("a List", "a JSON list", '["a", "b"]'),
    DICT: ("a Dict", "a JSON object", '{"key": "value"}'),
}
_TRUE, _FALSE = ("true", "1"), ("false", "0")


class ParamError(ValueError):
    """A ``--param`` the pipeline cannot take: the message is one line, ready for the user."""


def declared_type(type_name: object) -> str | None:
    """The canonical parameter type (``"Float"``, ...) of a declared type name; None for an artifact."""
    return _TYPE_NAMES.get(str(type_name).lower()) if isinstance(type_name, str) else None


def parse_json_or_text(text: str) -> Any:
    """``text`` read as JSON (``3``, ``0.5``, ``true``, ``[1]``), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _example(kind: str, default: Any) -> str:
    """The parameter's default when it says something (not '' nor None), else one of the type's."""
    if default is None or default == "" or (kind in (LIST, DICT) and not default):
        return _WORDS[kind][2]
    if kind == FLOAT and isinstance(default, int | float) and not isinstance(default, bool):
        return repr(float(default))
    return _shown(default)


def _kind_of(value: Any) -> str:
    """What a typed value is, in the pipeline's words ('an Integer', 'a List', ...)."""
    for python_type, kind in ((bool, BOOLEAN), (int, INTEGER), (float, FLOAT), (list, LIST), (dict, DICT)):
        if isinstance(value, python_type):
            return _WORDS[kind][0]
    return f"a {type(value).__name__}"


def _refuse(name: str, given: Any, kind: str, default: Any, why: str) -> ParamError:
    article_type, words, _ = _WORDS[kind]
    return ParamError(
        f"--param {name}={_shown(given)}: {name} takes {article_type} ({words}); {why}; "
        f"e.g. --param {name}={_example(kind, default)}"
    )


def _string(name: str, value: Any, default: Any) -> str:
    if not isinstance(value, str):
        raise _refuse(name, value, STRING, default, f"{_shown(value)} is {_kind_of(value)}")
    if len(value) >= 2 and value[0] == value[-1] == '"':  # a JSON string literal: --param x='"a b"'
        parsed = parse_json_or_text(value)
        if isinstance(parsed, str):
            return parsed
    return value


def _number(name: str, value: Any, kind: str, default: Any) -> int | float:
    given = value
    if isinstance(value, str):
        value = parse_json_or_text(value.strip())
    if isinstance(value, bool) or not isinstance(value, int | float):
        what = "not a number" if isinstance(value, str) else f"{_kind_of(value)}, not a number"
        raise _refuse(name, given, kind, default, f"{_shown(given)} is {what}")
    if not math.isfinite(value):
        raise _refuse(name, given, kind, default, f"{_shown(given)} is not a finite number")
    if kind == FLOAT:
        return float(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise _refuse(name, given, kind, default, f"{_shown(given)} has a fractional part")
        return int(value)
    return value


def _boolean(name: str, value: Any, default: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str | int) else None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _refuse(name, value, BOOLEAN, default, f"{_shown(value)} is none of them")


def _json(name: str, value: Any, kind: str, default: Any) -> Any:
    wanted = list if kind == LIST else dict
    given = value
    if isinstance(value, str):
        value = parse_json_or_text(value)
    if not isinstance(value, wanted):
        what = f"not {_WORDS[kind][1]}" if isinstance(value, str) else f"{_kind_of(value)}"
        raise _refuse(name, given, kind, default, f"{_shown(given)} is {what}")
    return value


def convert_value(name: str, value: Any, type_name: object, default: Any = None) -> Any:
    """``value`` as the declared type ``type_name`` wants it (text is read per type).

    Raises:
        ParamError: the value cannot be that type; the message names the parameter, the value,
            the type and an example.
    """
    kind = declared_type(type_name)
    if kind is None:  # not a parameter type kfp declares: passed on as given
        return value
    if kind == STRING:
        return _string(name, value, default)
    if kind in (INTEGER, FLOAT):
        return _number(name, value, kind, default)
    if kind == BOOLEAN:
        return _boolean(name, value, default)
    return _json(name, value, kind, default)


def _first_clause(description: str | None) -> str:
    text = (description or "").strip()
    for stop in (";", ","):
        text = text.split(stop, 1)[0]
    return text.strip()


def convert_params(pipeline_func: Any, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The run's parameters converted to the pipeline's declared types, every one checked.

    ``pipeline_func`` is a kfp pipeline (its ``component_spec.inputs`` declare the names and
    types); ``params`` maps names to values, text (from ``--param``) or already typed.

    Raises:
        ParamError: a name the pipeline does not take (the ones it takes are listed), a value that
            is not its declared type, or a required parameter (no default) left out or empty.
    """
    params = dict(params or {})
    inputs = dict(pipeline_func.component_spec.inputs or {})
    name_of = getattr(pipeline_func, "name", "the pipeline")
    unknown = sorted(set(params) - set(inputs))
    if unknown:
        raise ParamError(
            f"unknown parameter(s) {', '.join(unknown)} for {name_of}; it takes: {', '.join(inputs)}"
        )
    converted = {
        name: convert_value(name, value, inputs[name].type, inputs[name].default)
        for name, value in params.items()
    }
    missing = [
        name
        for name, spec in inputs.items()
        if not spec.optional and spec.default is None and converted.get(name) in (None, "")
    ]
    if missing:
        needs = " ".join(f"--param {name}=..." for name in missing)
        what = ", ".join(
            f"{name} ({clause})" if (clause := _first_clause(inputs[name].description)) else name
            for name in missing
        )
        raise ParamError(f"{name_of} needs {needs}; missing or empty: {what}")
    return converted

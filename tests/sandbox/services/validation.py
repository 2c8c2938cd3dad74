"""Input validation from botocore's own service model, with AWS's (Coral) message wording.

AWS validates every request against the operation's input shape before the operation runs and
answers with one ``ValidationException`` listing every violation, e.g.::

    1 validation error detected: Value '100' at 'maxResults' failed to satisfy constraint:
    Member must have value less than or equal to 50

botocore itself checks only ``required``, types and ``min`` on the client; ``max``, ``pattern`` and
``enum`` are the server's job, so raw clients (and clients that turn off validation) hit these.
Validated here: required, type (string/integer/boolean/list/map/structure), string length, list
length, integer range, enum, pattern. Not validated: timestamps and blobs (we have no such inputs),
members the model does not know (AWS ignores them too).
"""

from __future__ import annotations

import functools
import re
from typing import Any

from .core import SerializationException, ValidationException

try:  # Java-style \p{L} classes appear in some SSM patterns; the `regex` module understands them.
    import regex as _regex
except ImportError:  # pragma: no cover - regex ships with the venv (cfn-lint dependency)
    _regex = None


@functools.lru_cache(maxsize=8)
def service_model(service: str) -> Any:
    """botocore's ServiceModel for ``service`` (loaded once)."""
    import botocore.session

    return botocore.session.get_session().get_service_model(service)


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> Any:
    if _regex is not None:
        return _regex.compile(pattern)
    if "\\p{" in pattern:  # pragma: no cover
        return None
    return re.compile(pattern)


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


def _render(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "'[" + ", ".join(str(v) for v in value) + "]'"
    if isinstance(value, bool):
        return f"'{str(value).lower()}'"
    return f"'{value}'"


def validate(service: str, operation: str, params: dict[str, Any]) -> None:
    """Raise ``ValidationException`` (all violations) or ``SerializationException`` (wrong types)."""
    op = service_model(service).operation_model(operation)
    errors: list[str] = []
    _check_structure(op.input_shape, params, "", errors)
    if errors:
        count = len(errors)
        noun = "error" if count == 1 else "errors"
        raise ValidationException(f"{count} validation {noun} detected: " + "; ".join(errors))


def _violation(value: Any, path: str, constraint: str) -> str:
    return f"Value {_render(value)} at '{path}' failed to satisfy constraint: Member must {constraint}"


def _check_structure(shape: Any, value: Any, path: str, errors: list[str]) -> None:
    if not isinstance(value, dict):
        raise SerializationException("Start of structure or map found where not expected.")
    for name in shape.required_members:
        if value.get(name) is None:
            errors.append(_violation(None, _join(path, name), "not be null"))
    for name, member in shape.members.items():
        if name in value and value[name] is not None:
            _check(member, value[name], _join(path, name), errors)


def _join(path: str, name: str) -> str:
    return f"{path}.{_lower_first(name)}" if path else _lower_first(name)


def _check(shape: Any, value: Any, path: str, errors: list[str]) -> None:
    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure":
        _check_structure(shape, value, path, errors)
    elif kind == "list":
        if not isinstance(value, list):
            raise SerializationException("Unexpected value type in payload")
        _check_length(value, len(value), meta, path, errors)
        for index, item in enumerate(value, start=1):
            _check(shape.member, item, f"{path}.{index}.member", errors)
    elif kind == "map":
        if not isinstance(value, dict):
            raise SerializationException("Unexpected value type in payload")
        _check_length(value, len(value), meta, path, errors)
        for key, item in value.items():
            _check(shape.key, key, f"{path}.{key}.key", errors)
            _check(shape.value, item, f"{path}.{key}.value", errors)
    elif kind == "string":
        if not isinstance(value, str):
            raise SerializationException("Unexpected value type in payload")
        _check_length(value, len(value), meta, path, errors)
        if shape.enum and value not in shape.enum:
            errors.append(_violation(value, path, f"satisfy enum value set: [{', '.join(shape.enum)}]"))
        pattern = meta.get("pattern")
        if pattern:
            compiled = _compile(pattern)
            if compiled is not None and not compiled.search(value):
                errors.append(_violation(value, path, f"satisfy regular expression pattern: {pattern}"))
    elif kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise SerializationException("NUMBER_VALUE cannot be converted to an integer")
        if "min" in meta and value < meta["min"]:
            errors.append(_violation(value, path, f"have value greater than or equal to {meta['min']}"))
        if "max" in meta and value > meta["max"]:
            errors.append(_violation(value, path, f"have value less than or equal to {meta['max']}"))
    elif kind == "boolean" and not isinstance(value, bool):
        raise SerializationException("Unexpected value type in payload")


def _check_length(value: Any, length: int, meta: dict[str, Any], path: str, errors: list[str]) -> None:
    if "min" in meta and length < meta["min"]:
        errors.append(_violation(value, path, f"have length greater than or equal to {meta['min']}"))
    if "max" in meta and length > meta["max"]:
        errors.append(_violation(value, path, f"have length less than or equal to {meta['max']}"))

"""Type-check raw JSON against the proto schema, reporting every problem.

json_format stops at the first problem; an operator fixing a file wants them
all, each with its path. This walk accepts what kglb's jsonpb accepted (camelCase
or proto names, enum names or numbers, numbers or quoted numbers) and rejects
the rest: unknown fields, wrong types, out-of-range numbers, unknown enum
values, two members of one oneof, a field given in both spellings, duplicate
keys, nulls inside lists and maps.

A ``null`` field means "unset", as in jsonpb and json_format.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor as F

from ._errors import Problems, Where

_INT_RANGES = {
    F.TYPE_UINT32: (0, 2**32 - 1),
    F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_INT32: (-(2**31), 2**31 - 1),
    F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1),
    F.TYPE_FIXED64: (0, 2**64 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1),
    F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
}
_FLOAT_MAX = {F.TYPE_FLOAT: 3.4028234663852886e38, F.TYPE_DOUBLE: math.inf}
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
# Quoted numbers as jsonpb takes them: JSON number syntax, nothing Python-only
# (int() and float() would also take "1_000", " 7" or non-ASCII digits).
_QUOTED_INT = re.compile(r"-?[0-9]+")
_QUOTED_FLOAT = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")


class JsonObject(dict):
    """A JSON object that remembers keys given more than once (the last one wins)."""

    duplicates: tuple[str, ...] = ()

    @classmethod
    def from_pairs(cls, pairs: list[tuple[str, Any]]) -> JsonObject:
        obj = cls(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            obj.duplicates = tuple(k for k, _ in pairs if k in seen or seen.add(k))
        return obj


def kind(value: Any) -> str:
    """The JSON type name of a Python value from json.loads."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def check_message(value: Any, descriptor: Descriptor, where: Where, problems: Problems) -> dict:
    """Report every schema problem of ``value`` (a JSON object) as ``descriptor``.

    Returns a copy without the faulty parts (an unknown field, a value of the
    wrong type, a second member of a oneof, ...), which json_format can parse,
    so that the rules still check everything else in the same pass. Each dropped
    part has been reported at its path (``Problems.dropped``).
    """
    if not isinstance(value, dict):
        problems.error(where, f"must be an object, not {kind(value)}")
        problems.dropped.add(where.text)
        return {}
    for key in getattr(value, "duplicates", ()):
        problems.error(where, f"key {key!r} is given more than once")
    fields: dict[str, F] = {}
    for field in descriptor.fields:
        fields[field.json_name] = fields[field.name] = field
    spelt: dict[str, str] = {}  # field name -> key used
    oneofs: dict[str, str] = {}  # oneof name -> key used
    clean: dict[str, Any] = {}
    for key, item in value.items():
        here = Where(f"{where.text}.{key}" if where.text else key, item)
        field = fields.get(key)
        if field is None:
            problems.error(here, _unknown(key, descriptor))
            continue
        if field.name in spelt:
            problems.error(here, f"given twice (also as {spelt[field.name]!r})")
            continue
        spelt[field.name] = key
        if item is None:
            continue
        oneof = field.containing_oneof
        if oneof is not None and oneof.name != "_" + field.name:  # not proto3 `optional`
            if oneof.name in oneofs:
                problems.error(here, f"only one of {_names(oneof.fields)} may be set "
                                     f"(also {oneofs[oneof.name]!r})")
                continue
            oneofs[oneof.name] = key
        item = _check_field(item, field, here, problems)
        if item is not _DROP:
            clean[key] = item
    return clean


#: ``_check_field``'s answer for a value that is left out of the clean copy.
_DROP = object()


def _unknown(key: str, descriptor: Descriptor) -> str:
    names = [f.json_name for f in descriptor.fields]
    close = difflib.get_close_matches(key, names + [f.name for f in descriptor.fields], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(names)})"
    return f"unknown field of {descriptor.name}{hint}"


def _names(fields) -> str:
    return ", ".join(f.json_name for f in fields)


def _check_field(value: Any, field: F, where: Where, problems: Problems) -> Any:
    """The clean copy of ``value``, or _DROP (after reporting why)."""
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        if not isinstance(value, dict):
            return _drop(where, f"must be an object, not {kind(value)}", problems)
        for key in getattr(value, "duplicates", ()):
            problems.error(where, f"key {key!r} is given more than once")
        value_field = field.message_type.fields_by_name["value"]
        entries = {key: _check_single(item, value_field, where.key(key), problems)
                   for key, item in value.items()}
        return {key: item for key, item in entries.items() if item is not _DROP}
    if field.is_repeated:
        if not isinstance(value, list):
            return _drop(where, f"must be a list, not {kind(value)}", problems)
        items = [_check_single(item, field, where.item(i), problems)
                 for i, item in enumerate(value)]
        if _DROP in items:
            # Dropping an item would renumber the rest in the rules' paths: drop the list.
            problems.dropped.add(where.text)
            return _DROP
        return items
    return _check_single(value, field, where, problems)


def _check_single(value: Any, field: F, where: Where, problems: Problems) -> Any:
    message = _single_problem(value, field)
    if message == "":
        return check_message(value, field.message_type, where, problems)
    if message is not None:
        if field.type == F.TYPE_MESSAGE and field.is_repeated:
            # An empty object keeps the later items' indices; what the rules then
            # say about it is below this path, so it is not reported again.
            problems.error(where, message)
            problems.dropped.add(where.text)
            return {}
        return _drop(where, message, problems)
    return value


def _drop(where: Where, message: str, problems: Problems) -> object:
    problems.error(where, message)
    problems.dropped.add(where.text)
    return _DROP


def _single_problem(value: Any, field: F) -> str | None:
    """None if ``value`` is fine for ``field``, "" for a message to descend into, else why not."""
    if value is None:
        return "must not be null"
    if field.type == F.TYPE_MESSAGE:
        return "" if isinstance(value, dict) else f"must be an object, not {kind(value)}"
    if field.type in (F.TYPE_STRING, F.TYPE_BYTES):
        return None if isinstance(value, str) else f"must be a string, not {kind(value)}"
    if field.type == F.TYPE_BOOL:
        return None if isinstance(value, bool) else f"must be true or false, not {kind(value)}"
    if field.type == F.TYPE_ENUM:
        return _enum_problem(value, field)
    if field.type in _INT_RANGES:
        return _int_problem(value, *_INT_RANGES[field.type])
    return _float_problem(value, _FLOAT_MAX[field.type])


def _enum_problem(value: Any, field: F) -> str | None:
    enum = field.enum_type
    if isinstance(value, str):
        if value in enum.values_by_name:
            return None
        close = difflib.get_close_matches(value.upper(), list(enum.values_by_name), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown {enum.name} {value!r} (one of {', '.join(enum.values_by_name)}){hint}"
    if isinstance(value, int) and not isinstance(value, bool):
        if value in enum.values_by_number:
            return None
        return f"unknown {enum.name} number {value}"
    return f"must be a {enum.name} name or number, not {kind(value)}"


def _int_problem(value: Any, low: int, high: int) -> str | None:
    number = value
    if isinstance(value, str):  # jsonpb accepts quoted numbers
        if not _QUOTED_INT.fullmatch(value) or len(value) > 40:
            return f"must be an integer, not {_short(value)}"
        number = int(value)
    elif isinstance(value, float):
        if not value.is_integer():
            return f"must be an integer, not {_short(value)}"
        number = int(value)
    elif isinstance(value, bool) or not isinstance(value, int):
        return f"must be an integer, not {kind(value)}"
    if not low <= number <= high:
        return f"{_short(value)} is out of range ({low}..{high})"
    return None


def _float_problem(value: Any, limit: float) -> str | None:
    if isinstance(value, str):
        if value in _NON_FINITE:
            return None
        if not _QUOTED_FLOAT.fullmatch(value):
            return f"must be a number, not {_short(value)}"
        number = float(value)
    elif isinstance(value, float) and not math.isfinite(value):
        # json.loads turns 1e999 into inf; json_format refuses a bare infinity.
        return "is too large for a number"
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            return f"{_short(value)} is out of range"
    else:
        return f"must be a number, not {kind(value)}"
    if math.isfinite(number) and abs(number) > limit:
        return f"{_short(value)} is out of range"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."

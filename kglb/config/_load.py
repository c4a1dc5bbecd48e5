"""``load``: kglb JSON config text -> Config, or ConfigError listing every problem.

Theory of operation, in three steps that together report every problem at once:

1. JSON: strict UTF-8 text, one JSON object; duplicate keys are remembered.
2. Schema (``_schema``): the raw JSON is walked against the proto descriptors,
   accepting exactly what kglb's jsonpb accepted, and copied without the parts
   it refuses. ``json_format.ParseDict`` builds the ``ControlPlaneConfig``
   message from that copy.
3. Rules (``_validate``, ``_checks``, ``_rules``): kglb's validation plus our
   fixes, and conversion to the frozen dataclasses with every default applied.
   They run even when step 2 found problems, so a mistyped field does not hide
   a bad VIP; what they would say about a part step 2 left out is not repeated.

Pure: no I/O; actors/config_file.py reads the file.
"""

from __future__ import annotations

import json

from google.protobuf import json_format

from ..pb import config_pb2
from ._errors import ConfigError, Problems, Where
from ._schema import JsonObject, check_message, kind
from ._types import Config
from ._validate import convert_balancers


def load(text: str | bytes) -> Config:
    """Parse and validate a kglb ControlPlaneConfig in protobuf JSON.

    Field names may be camelCase or snake_case, enums names or numbers; unknown
    fields are refused. Raises ConfigError (and nothing else) listing every
    problem as ``"path: message"``; accepted-but-ignored settings are listed in
    ``Config.warnings``.
    """
    data = _parse_json(text)
    problems = Problems()
    root = Where("", data)
    clean = check_message(data, config_pb2.ControlPlaneConfig.DESCRIPTOR, root, problems)
    message = config_pb2.ControlPlaneConfig()
    try:
        json_format.ParseDict(clean, message)
    except (json_format.ParseError, ValueError, TypeError, OverflowError, RecursionError) as e:
        # The schema walk should have caught it; still an operator error, not a crash.
        raise ConfigError([*problems.reported(), f"invalid config: {e}"]) from None
    balancers = convert_balancers(message, root, problems)
    if problems.errors:
        raise ConfigError(problems.reported())
    return Config(balancers=balancers, warnings=tuple(problems.warnings))


def _parse_json(text: str | bytes) -> dict:
    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"not UTF-8 text: invalid byte at offset {e.start}") from None
    text = text.removeprefix("\ufeff")  # a BOM some editors write
    if not text.strip():
        raise ConfigError('empty config: expected a JSON object such as {"balancers": [...]}')
    try:
        data = json.loads(text, object_pairs_hook=JsonObject.from_pairs,
                          parse_constant=_refuse_constant)
    except json.JSONDecodeError as e:
        raise ConfigError(f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise ConfigError("invalid JSON: nested too deeply") from None
    except ValueError as e:  # a refused constant, an integer with thousands of digits
        raise ConfigError(f"invalid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"the config must be a JSON object, not {kind(data)}")
    return data


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")

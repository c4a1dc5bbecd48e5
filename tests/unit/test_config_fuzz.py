"""Property tests: whatever the input, load() returns a Config or raises ConfigError."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from kglb.config import Config, ConfigError, load

HERE = Path(__file__).parent
VALID = [json.loads((HERE.parents[1] / "examples" / name).read_text())
         for name in ("example_config.json", "http_bgp.json", "dns_fwmark_ipv6.json")]
VALID.append(json.loads((HERE / "configs" / "base.json").read_text()))

# Values that tend to hit edges: wrong types, enum names, huge and negative numbers.
scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=False, allow_infinity=False)
           | st.sampled_from(["", "NaN", "Infinity", "12", "-1", "1.5", "TCP", "UDP", "MASQ", "DR",
                              "IP_VS_SCH", "HASHED", "EMPTY", "AF_INET6", "10.0.0.1", "::1",
                              "fe80::1%lo", "1.2.3", "lo", "x" * 20])
           | st.text(max_size=8))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=6) | st.sampled_from(
                               ["balancers", "name", "lbService", "port", "ipv4"]), inner, max_size=4),
                           max_leaves=12)
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def load_or_error(text: str | bytes) -> Config | ConfigError:
    try:
        return load(text)
    except ConfigError as e:
        assert e.problems and all(isinstance(p, str) and p for p in e.problems)
        return e


@FAST
@given(json_values)
def test_random_json_never_raises_anything_else(value):
    load_or_error(json.dumps(value))


@FAST
@given(st.binary(max_size=64) | st.text(max_size=64))
def test_random_text_never_raises_anything_else(text):
    load_or_error(text)


def _paths(node, path=()):
    """Every (container, key) position in a JSON document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path + (key,)
            yield from _paths(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield path + (index,)
            yield from _paths(value, path + (index,))


@st.composite
def mutated_configs(draw):
    data = copy.deepcopy(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = list(_paths(data))
        if not paths:
            break
        *parents, last = draw(st.sampled_from(paths))
        node = data
        for key in parents:
            node = node[key]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete":
            del node[last]
        elif action == "replace":
            node[last] = draw(json_values)
        elif isinstance(node, dict):
            node[draw(st.text(max_size=6))] = draw(json_values)
        else:
            node.append(draw(json_values))
    return data


@FAST
@given(mutated_configs())
def test_mutated_valid_configs_never_raise_anything_else(data):
    result = load_or_error(json.dumps(data))
    if isinstance(result, Config):
        assert all(b.name and b.setup_name for b in result.balancers)


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(VALID), st.data())
def test_truncated_valid_configs_give_config_errors(data, draw):
    text = json.dumps(data, indent=2)
    cut = draw.draw(st.integers(min_value=0, max_value=len(text) - 1))
    assert isinstance(load_or_error(text[:cut]), ConfigError)

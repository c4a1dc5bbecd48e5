"""kglb.discovery: endpoints, keep-last on failure, the maxRemoveRatio guard, parsing answers."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kglb.discovery import (
    DiscoveryError,
    Endpoint,
    Endpoints,
    SourceState,
    SrvRecord,
    observe_answer,
    observe_failure,
    parse_etcd_value,
    parse_file_sd,
    parse_hostport,
    srv_endpoints,
)


def reals(*n):
    return tuple(Endpoint(host=f"10.0.0.{i}", port=80) for i in n)


def hosts(state):
    return sorted(e.host for e in state.endpoints)


def test_endpoint_validates_and_is_canonical():
    e = Endpoint(host="2001:DB8::1", port=80, weight=2)
    assert e.address == "2001:db8::1" and e.weight == 2.0
    assert Endpoint(host="web-1", port=80).address is None  # a name, resolved later
    for bad in (dict(host="", port=1), dict(host="a", port=70000), dict(host="a", port=1, weight=-1),
                dict(host="a", port=1, weight=math.nan), dict(host="a", port=1, address="x")):
        with pytest.raises(ValueError):
            Endpoint(**bad)


def test_endpoints_keep_the_source_order_without_duplicates():
    a, b = Endpoint(host="b", port=1), Endpoint(host="a", port=1)
    listed = Endpoints(endpoints=(a, b, Endpoint(host="b", port=1, weight=3)))
    assert listed.endpoints == (a, b)  # the first of two equal keys wins
    assert listed == Endpoints(endpoints=(a, b))


# state, answer -> (accepted hosts, held?)
GUARD_TABLE = [
    ("first answer, anything goes", (), (1, 2), 0.5, [1, 2], False),
    ("remove half of 4 with 0.5", (1, 2, 3, 4), (1, 2), 0.5, [1, 2], False),
    ("remove 3 of 4 with 0.5: held", (1, 2, 3, 4), (1,), 0.5, [1, 2, 3, 4], True),
    ("additions apply while held", (1, 2, 3, 4), (1, 5), 0.5, [1, 2, 3, 4, 5], True),
    ("remove all: held even with 1.0", (1, 2), (), 1.0, [1, 2], True),
    ("remove one of two with 0.5", (1, 2), (2,), 0.5, [2], False),
    ("remove one of one: held", (1,), (), 0.5, [1], True),
    ("ratio 0: any removal held", (1, 2, 3), (1, 2), 0.0, [1, 2, 3], True),
]


@pytest.mark.parametrize("name,current,answer,ratio,expected,held", GUARD_TABLE,
                         ids=[row[0] for row in GUARD_TABLE])
def test_removal_guard_table(name, current, answer, ratio, expected, held):
    state = observe_answer(SourceState(), reals(*current), now=0.0, max_remove_ratio=1.0) \
        if current else SourceState()
    state = observe_answer(state, reals(*answer), now=1.0, max_remove_ratio=ratio)
    assert hosts(state) == [f"10.0.0.{i}" for i in expected]
    assert (state.held is not None) == held
    assert state.up and state.last_success == 1.0


def test_a_held_removal_applies_when_the_next_answer_agrees():
    state = observe_answer(SourceState(), reals(1, 2, 3, 4), now=0.0)
    state = observe_answer(state, (), now=1.0)
    assert hosts(state) == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
    state = observe_answer(state, (), now=2.0)  # the same again: it is meant
    assert hosts(state) == [] and state.held is None


def test_a_held_removal_is_dropped_when_the_source_recovers():
    state = observe_answer(SourceState(), reals(1, 2, 3, 4), now=0.0)
    state = observe_answer(state, reals(1), now=1.0)  # a truncated answer
    state = observe_answer(state, reals(1, 2, 3, 4), now=2.0)
    assert hosts(state) == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
    assert state.held is None
    state = observe_answer(state, reals(1), now=3.0)  # one truncated answer again: held anew
    assert len(state.endpoints) == 4


def test_failure_keeps_the_last_list_and_marks_the_source_down():
    state = observe_answer(SourceState(), reals(1, 2), now=5.0)
    failed = observe_failure(state, "timeout")
    assert failed.endpoints == state.endpoints and not failed.up
    assert failed.error == "timeout" and failed.failures == 1 and failed.last_success == 5.0
    assert observe_answer(failed, reals(1, 2), now=6.0).up


keys = st.lists(st.integers(1, 40), unique=True, max_size=30)


@given(st.lists(keys, min_size=1, max_size=6), st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9, 1.0]))
def test_one_answer_never_removes_more_than_the_ratio(answers, ratio):
    state = SourceState()
    previous: list = []
    for n, answer in enumerate(answers):
        before = {e.key for e in state.endpoints}
        state = observe_answer(state, reals(*answer), now=float(n), max_remove_ratio=ratio)
        after = {e.key for e in state.endpoints}
        removed = len(before - after)
        agreed = previous == sorted(answer)
        if not agreed:
            assert removed <= math.floor(ratio * len(before) + 1e-9)
            assert not before or after  # never emptied by one answer
        assert {e.key for e in reals(*answer)} <= after  # additions always apply
        previous = sorted(answer)


@given(keys, keys, st.sampled_from([0.0, 0.5, 1.0]))
def test_two_agreeing_answers_give_exactly_the_answer(first, second, ratio):
    state = observe_answer(SourceState(), reals(*first), now=0.0)
    for now in (1.0, 2.0):
        state = observe_answer(state, reals(*second), now=now, max_remove_ratio=ratio)
    assert state.endpoints == Endpoints(endpoints=reals(*second)) and state.held is None


@given(keys, st.lists(st.text(min_size=1, max_size=5), max_size=4))
def test_failures_never_change_the_list(answer, reasons):
    state = observe_answer(SourceState(), reals(*answer), now=0.0)
    for reason in reasons:
        failed = observe_failure(state, reason)
        assert failed.endpoints == state.endpoints
        state = failed


@pytest.mark.parametrize("text,host,port", [
    ("10.0.0.1:80", "10.0.0.1", 80), ("web-2", "web-2", 8080), ("[2001:db8::1]:81", "2001:db8::1", 81),
    ("2001:db8::1", "2001:db8::1", 8080), ("web.example:9000", "web.example", 9000),
])
def test_parse_hostport(text, host, port):
    assert parse_hostport(text, 8080) == (host, port)


@pytest.mark.parametrize("text", ["", ":80", "web:0", "web:x", "[::1", "[::1]x", "web:70000",
                                  "web:80:90"])
def test_parse_hostport_refuses(text):
    with pytest.raises(DiscoveryError):
        parse_hostport(text, 80)


def test_file_sd_targets_take_the_default_port_and_labels_are_ignored():
    text = '[{"targets": ["10.0.0.1:81", "web-2"], "labels": {"dc": "x"}}, {"targets": []}]'
    assert parse_file_sd(text, 80) == (Endpoint(host="10.0.0.1", port=81),
                                        Endpoint(host="web-2", port=80))


@pytest.mark.parametrize("text", ['[{"targets": ["10.0.0.1:8', '{}', '[{"labels": {}}]',
                                  '[{"targets": [1]}]', '[{"targets": ["a"], "labels": []}]', ''])
def test_file_sd_invalid_or_partial_is_refused(text):
    with pytest.raises(DiscoveryError):
        parse_file_sd(text, 80)


def test_etcd_values():
    assert parse_etcd_value(b"10.0.0.1:81", 80) == Endpoint(host="10.0.0.1", port=81)
    assert parse_etcd_value('{"host": "web", "port": 82, "weight": 0.5}', 80) == \
        Endpoint(host="web", port=82, weight=0.5)
    assert parse_etcd_value('{"host": "10.0.0.2"}', 80) == Endpoint(host="10.0.0.2", port=80)
    for bad in ('{"host": 1}', '{"host": "a", "x": 1}', '{"host": "a", "port": "1"}', "{",
                b"\xff", '{"host": "a", "weight": -1}'):
        with pytest.raises(DiscoveryError):
            parse_etcd_value(bad, 80)


def test_srv_takes_the_lowest_priority_and_relative_weights():
    records = [SrvRecord(priority=20, weight=5, port=80, target="backup"),
               SrvRecord(priority=10, weight=10, port=81, target="a"),
               SrvRecord(priority=10, weight=30, port=82, target="b"),
               SrvRecord(priority=10, weight=0, port=83, target="c")]
    assert srv_endpoints(records) == (Endpoint(host="a", port=81, weight=1 / 3),
                                      Endpoint(host="b", port=82, weight=1.0),
                                      Endpoint(host="c", port=83, weight=0.0))
    assert srv_endpoints([]) == ()

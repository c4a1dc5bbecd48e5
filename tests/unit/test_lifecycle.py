"""kglb/lifecycle.py and its use in kglb/balancer.py: drain, slow start, flap damping, floor."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _control_fakes import balancer_config

from kglb import Health
from kglb.balancer import Upstream, balancer_state
from kglb.config import FlapDamping, Lifecycle
from kglb.lifecycle import (
    DRAIN_SETTLE,
    SLOW_START_STEPS,
    Candidate,
    Drain,
    Flaps,
    drain_over,
    flapped,
    kept_in,
    next_ramp_step,
    ramp_weight,
    release_at,
    suppressed,
)

UP = Health(up=True, count=1, settled=True)
DOWN = Health(up=False, count=-1, settled=True)
DAMPING = FlapDamping(half_life_ms=10_000, suppress_flaps=3.0, reuse_flaps=1.5)


def weights(state):
    return {r.key.address: r.weight for r in state.services[0].reals}


# ------------------------------------------------------------------ slow start

@pytest.mark.parametrize("elapsed, weight", [
    (0.0, 100), (1.0, 100), (1.99, 100), (2.0, 200), (4.5, 400), (9.99, 900),
    (10.0, 1000), (60.0, 1000),
])
def test_ramp_weight_steps_of_a_tenth(elapsed, weight):
    # window 10 s, 10 steps: a tenth until 2 s, one more tenth every second, all at 10 s.
    assert ramp_weight(1000, started=100.0, now=100.0 + elapsed, window_ms=10_000) == weight


def test_ramp_weight_is_at_least_one_and_off_without_a_ramp():
    assert ramp_weight(3, started=0.0, now=0.0, window_ms=1000) == 1
    assert ramp_weight(1000, started=None, now=5.0, window_ms=1000) == 1000
    assert ramp_weight(1000, started=0.0, now=0.0, window_ms=0) == 1000


def test_next_ramp_step_is_the_next_boundary_then_none():
    assert next_ramp_step(started=10.0, now=10.0, window_ms=2000) == pytest.approx(10.4)
    assert next_ramp_step(started=10.0, now=10.4, window_ms=2000) == pytest.approx(10.6)
    assert next_ramp_step(started=10.0, now=11.8, window_ms=2000) == pytest.approx(12.0)
    assert next_ramp_step(started=10.0, now=12.0, window_ms=2000) is None
    assert next_ramp_step(started=None, now=0.0, window_ms=2000) is None


def test_a_ramp_takes_exactly_the_documented_steps():
    # Following next_ramp_step from the start visits every step once: N distinct weights.
    started, now, seen = 1000.0, 1000.0, []
    while now is not None:
        seen.append(ramp_weight(1000, started=started, now=now, window_ms=3000))
        now = next_ramp_step(started=started, now=now, window_ms=3000)
    assert seen == [100 * k for k in range(1, SLOW_START_STEPS + 1)]


# ------------------------------------------------------------------ flap damping

def test_penalty_halves_every_half_life():
    flaps = Flaps(penalty=4.0, at=0.0)
    assert flaps.penalty_at(10.0, DAMPING) == pytest.approx(2.0)
    assert flaps.penalty_at(20.0, DAMPING) == pytest.approx(1.0)


def test_suppressed_at_the_threshold_and_released_below_reuse():
    flaps = Flaps()
    flaps = flapped(flaps, now=0.0, damping=DAMPING)  # 1
    flaps = flapped(flaps, now=0.0, damping=DAMPING)  # 2
    assert not flaps.suppressed
    flaps = flapped(flaps, now=0.0, damping=DAMPING)  # 3 >= 3
    assert flaps.suppressed and suppressed(flaps, now=0.0, damping=DAMPING)
    # 3 * 0.5 ** (t / 10) < 1.5  <=>  t > 10 s
    assert release_at(flaps, DAMPING) == pytest.approx(10.0)
    assert suppressed(flaps, now=9.99, damping=DAMPING)
    assert not suppressed(flaps, now=10.0, damping=DAMPING)


def test_a_flap_while_suppressed_extends_it_and_decayed_flaps_do_not_add_up():
    flaps = Flaps(penalty=3.0, at=0.0, suppressed=True)
    later = flapped(flaps, now=5.0, damping=DAMPING)  # 3/sqrt(2) + 1 = 3.12, still suppressed
    assert later.suppressed and release_at(later, DAMPING) > release_at(flaps, DAMPING)
    # One flap a half-life apart forever converges to 2 < 3: never suppressed.
    flaps = Flaps()
    for i in range(50):
        flaps = flapped(flaps, now=i * 10.0, damping=DAMPING)
        assert not flaps.suppressed


def test_no_damping_never_suppresses():
    assert not suppressed(Flaps(penalty=99.0, suppressed=True), now=0.0, damping=None)


# ------------------------------------------------------------------ floor

def test_kept_in_prefers_the_most_recent_failures_then_config_order():
    candidates = [Candidate(address="a", down_since=10.0), Candidate(address="b", down_since=30.0),
                  Candidate(address="c", down_since=None), Candidate(address="d", down_since=30.0)]
    # 10 reals, 3 pooled, ratio 0.5: 2 more, the two that failed at 30 (b before d).
    assert kept_in(pooled=3, total=10, ratio=0.5, candidates=candidates) == {"b", "d"}
    assert kept_in(pooled=3, total=10, ratio=0.6, candidates=candidates) == {"a", "b", "d"}
    assert kept_in(pooled=5, total=10, ratio=0.5, candidates=candidates) == frozenset()
    assert kept_in(pooled=0, total=10, ratio=0.5, candidates=candidates) == frozenset()
    assert kept_in(pooled=3, total=10, ratio=0.0, candidates=candidates) == frozenset()


# ------------------------------------------------------------------ drain

@pytest.mark.parametrize("now, active, read_at, over", [
    (1.0, 3, 100.0, False),  # connections left
    (20.0, 3, 100.0, True),  # timeout
    (1.0, 0, 0.0 + DRAIN_SETTLE, True),  # a settled reading shows none
    (1.0, 0, DRAIN_SETTLE - 0.01, False),  # read too early: weight 0 may not be applied yet
    (1.0, None, None, False),  # no reading
])
def test_drain_over(now, active, read_at, over):
    drain = Drain(since=0.0, port=80)
    assert drain_over(drain, now=now, timeout_ms=20_000, active=active, read_at=read_at) is over


# ------------------------------------------------------------------ in the balancer state

def life(**kwargs):
    return balancer_config(hosts=("10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.4"),
                           lifecycle=Lifecycle(**kwargs))


def test_a_draining_real_stays_at_zero_and_out_of_the_ratio():
    config = life(drain_timeout_ms=5000)
    ups = [Upstream(host="10.1.0.1", address="10.1.0.1", health=UP),
           Upstream(host="10.1.0.9", address="10.1.0.9", health=UP,
                    drain=Drain(since=1.0, port=80))]
    state = balancer_state(config, ups, initial=False, now=2.0)
    assert weights(state) == {"10.1.0.1": 1000, "10.1.0.9": 0}
    assert state.alive_ratio == 1.0
    status = {r.host: r for r in state.reals}
    assert status["10.1.0.9"].state == "draining" and status["10.1.0.9"].drain_left == 4.0


def test_a_suppressed_real_is_down_and_a_ramping_one_partial():
    config = life(slow_start_ms=10_000, flap_damping=DAMPING)
    ups = [Upstream(host="10.1.0.1", address="10.1.0.1", health=UP),
           Upstream(host="10.1.0.2", address="10.1.0.2", health=UP,
                    flaps=Flaps(penalty=3.0, at=0.0, suppressed=True)),
           Upstream(host="10.1.0.3", address="10.1.0.3", health=UP, ramp_from=0.0)]
    state = balancer_state(config, ups, initial=False, now=2.5)
    assert weights(state) == {"10.1.0.1": 1000, "10.1.0.2": 0, "10.1.0.3": 200}
    assert [r.state for r in state.reals] == ["up", "suppressed", "ramping"]
    assert state.alive_ratio == pytest.approx(2 / 3)
    later = balancer_state(config, ups, initial=False, now=10.0)
    assert weights(later) == {"10.1.0.1": 1000, "10.1.0.2": 1000, "10.1.0.3": 1000}


def test_min_pooled_ratio_keeps_the_latest_failures_in():
    config = life(min_pooled_ratio=0.5)
    ups = [Upstream(host="10.1.0.1", address="10.1.0.1", health=UP),
           Upstream(host="10.1.0.2", address="10.1.0.2", health=DOWN, since=5.0),
           Upstream(host="10.1.0.3", address="10.1.0.3", health=DOWN, since=9.0),
           Upstream(host="10.1.0.4", address="10.1.0.4", health=DOWN, since=7.0)]
    state = balancer_state(config, ups, initial=False, now=10.0)
    assert weights(state) == {"10.1.0.1": 1000, "10.1.0.2": 0, "10.1.0.3": 1000, "10.1.0.4": 0}
    assert state.alive_ratio == 0.25  # health, not the floor, drives routes
    assert state.reals[2].state == "kept"


def test_all_off_is_kglb():
    config = life()
    ups = [Upstream(host="10.1.0.1", address="10.1.0.1", health=UP, ramp_from=0.0,
                    flaps=Flaps(penalty=9.0, at=0.0, suppressed=True)),
           Upstream(host="10.1.0.2", address="10.1.0.2", health=DOWN, since=1.0)]
    assert weights(balancer_state(config, ups, initial=False, now=0.0)) == {
        "10.1.0.1": 1000, "10.1.0.2": 0}


# ------------------------------------------------------------------ properties

addresses = [f"10.1.0.{i}" for i in range(1, 7)]
upstream = st.builds(
    lambda i, up, decided, since, ramp, penalty, supp, drain: Upstream(
        host=addresses[i], address=addresses[i],
        health=Health(up=up, count=1 if up else -1, settled=up or decided),
        since=since, ramp_from=ramp,
        flaps=Flaps(penalty=penalty, at=0.0, suppressed=supp),
        drain=Drain(since=0.0, port=80) if drain else None),
    st.integers(0, 5), st.booleans(), st.booleans(), st.none() | st.floats(0, 100),
    st.none() | st.floats(0, 100), st.floats(0, 20), st.booleans(), st.booleans())
lifecycles = st.builds(
    Lifecycle, drain_timeout_ms=st.integers(0, 10_000), slow_start_ms=st.integers(0, 60_000),
    flap_damping=st.none() | st.just(DAMPING), min_pooled_ratio=st.floats(0, 1))


@settings(max_examples=300, deadline=None)
@given(st.lists(upstream, max_size=8), lifecycles, st.floats(0, 200), st.booleans(),
       st.integers(1, 5000))
def test_properties(ups, lifecycle, now, initial, weight_up):
    config = balancer_config(hosts=tuple(addresses), lifecycle=lifecycle, weight_up=weight_up)
    state = balancer_state(config, ups, initial=initial, now=now)
    for real in state.services[0].reals:
        assert 0 <= real.weight <= weight_up  # weights never exceed weightUp
    assert len(state.reals) == len(ups)  # one status per upstream, in order
    for up, status in zip(ups, state.reals):
        if up.drain is not None:  # a draining real is never re-weighted by health
            assert status.state == "draining" and status.weight == 0
        elif suppressed(up.flaps, now=now, damping=lifecycle.flap_damping) and up is next(
                u for u in ups if u.address == up.address and u.drain is None):
            # (a host on the address of one listed before collapses into it, and shows it)
            # a suppressed real is never up: only kglb's fail-open gives it weight
            assert status.state == "suppressed"
            assert status.weight == 0 or state.failsafe
    for real in state.services[0].reals:
        if all(u.drain is not None for u in ups if u.address == real.key.address):
            assert real.weight == 0  # the real of a draining upstream, whatever its health
    live = [u for u in ups if u.drain is None]
    if not state.failsafe and not state.initial and lifecycle.min_pooled_ratio and live:
        total = len({u.address for u in live})
        pooled = sum(1 for r in state.services[0].reals if r.weight > 0)
        eligible = sum(1 for a in {u.address for u in live}) - sum(
            1 for u in {u.address: u for u in reversed(live)}.values()
            if suppressed(u.flaps, now=now, damping=lifecycle.flap_damping)
            or not u.health.decided(config.checker.fall))
        if pooled:
            assert pooled >= min(math.ceil(lifecycle.min_pooled_ratio * total - 1e-9), eligible)

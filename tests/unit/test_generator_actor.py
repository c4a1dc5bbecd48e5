"""actors/generator.py: first state waits for every balancer, coalescing, removal, memory."""

from functools import partial

import pytest
import trio
from _control_fakes import balancer_config

from actors.generator import Expect, GeneratorMemory, run_generator
from kglb import Health
from kglb.balancer import Upstream, balancer_state

A = balancer_config("a", port=80, hosts=("10.1.0.1",))
B = balancer_config("b", port=81, hosts=("10.1.0.2",))


def state(config, up=True, **kwargs):
    health = Health(up=up, count=1 if up else -1)
    upstreams = [Upstream(host=h, address=h, health=health, **kwargs) for h in config.hosts]
    return balancer_state(config, upstreams, initial=False)


async def test_waits_for_every_balancer_then_sends_only_changes(autojump_clock):
    states_send, states_receive = trio.open_memory_channel(100)
    desired_send, desired_receive = trio.open_memory_channel(100)
    memory = GeneratorMemory()
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(run_generator, states_receive, desired_send, memory=memory))
        await states_send.send(Expect(identities=(A.identity, B.identity)))
        await states_send.send(state(A))
        await trio.sleep(1)
        assert desired_receive.statistics().current_buffer_used == 0  # b not there yet
        await states_send.send(state(B))
        await trio.sleep(1)
        first = desired_receive.receive_nowait()
        assert [s.name for s in first.services] == ["a", "b"]
        await states_send.send(state(B, since=5.0))  # same weights: nothing new to send
        await trio.sleep(1)
        assert desired_receive.statistics().current_buffer_used == 0
        for weight in (1, 2, 3):  # a burst: only the newest counts
            heavier = balancer_config("a", port=80, hosts=("10.1.0.1",), weight_up=weight)
            await states_send.send(state(heavier))
        await trio.sleep(1)
        burst = desired_receive.receive_nowait()
        assert desired_receive.statistics().current_buffer_used == 0
        assert [r.weight for r in burst.services[0].reals] == [3]
        await states_send.send(Expect(identities=(B.identity,)))  # a removed: leaves at once
        await states_send.send(state(A))  # a late state of the removed balancer: dropped
        await trio.sleep(1)
        assert [s.name for s in desired_receive.receive_nowait().services] == ["b"]
        nursery.cancel_scope.cancel()
    assert memory.sent == 3


async def test_a_restarted_generator_keeps_what_it_knew(autojump_clock):
    states_send, states_receive = trio.open_memory_channel(100)
    desired_send, desired_receive = trio.open_memory_channel(100)
    memory = GeneratorMemory()
    for _ in range(2):
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(run_generator, states_receive, desired_send,
                                        memory=memory))
            if memory.order is None:
                await states_send.send(Expect(identities=(A.identity,)))
                await states_send.send(state(A))
            await trio.sleep(1)
            nursery.cancel_scope.cancel()
    assert desired_receive.statistics().current_buffer_used == 1  # not sent again
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(run_generator, states_receive, desired_send, memory=memory))
        await states_send.send(state(balancer_config("a", port=80, hosts=("10.1.0.1",),
                                                     weight_up=5)))
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert desired_receive.statistics().current_buffer_used == 2


async def test_invalid_state_is_counted_and_not_sent(autojump_clock):
    states_send, states_receive = trio.open_memory_channel(100)
    desired_send, desired_receive = trio.open_memory_channel(100)
    memory = GeneratorMemory()
    other_link = balancer_config("b", port=81, hosts=(), link="dummy0")  # same VIP, other link
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(run_generator, states_receive, desired_send, memory=memory))
        await states_send.send(Expect(identities=(A.identity, other_link.identity)))
        await states_send.send(state(A))
        await states_send.send(state(other_link))
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert desired_receive.statistics().current_buffer_used == 0
    assert memory.invalid == 1 and memory.generated.problems


async def test_a_lone_change_goes_out_after_settle_and_a_quick_second_waits_for_the_window(
        autojump_clock):
    states_send, states_receive = trio.open_memory_channel(100)
    desired_send, desired_receive = trio.open_memory_channel(100)
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(run_generator, states_receive, desired_send,
                                    memory=GeneratorMemory(), coalesce=0.1, settle=0.01))
        await states_send.send(Expect(identities=(A.identity,)))
        await states_send.send(state(A))
        await desired_receive.receive()
        await trio.sleep(5)  # a quiet spell
        sent = trio.current_time()
        await states_send.send(state(balancer_config("a", port=80, hosts=A.hosts, weight_up=7)))
        await desired_receive.receive()
        assert trio.current_time() - sent == pytest.approx(0.01)  # the settle time, not the window
        await states_send.send(state(A))  # right after: waits for the end of the window
        await desired_receive.receive()
        assert trio.current_time() - sent == pytest.approx(0.01 + 0.1)
        nursery.cancel_scope.cancel()

"""The state generator actor: balancers' states in, one desired DataPlaneState out.

It keeps the latest BalancerState of every balancer of the current config
(latest wins) and drains its channel before generating. A change after a
quiet spell is generated at once; changes that follow within ``coalesce``
seconds of a generation are gathered until that window ends, so a burst (500
reals flipping in one check round, a reload restarting many balancers) gives
the writer a few states, not hundreds, and a lone flip is not delayed. A generated state that fails validation is logged and counted and
not sent; an unchanged one is not sent again.

The first state goes out only once every balancer of the config has
published: a balancer missing from the desired state would have its service
deleted from the kernel. The supervisor announces the balancers of the
config with :class:`Expect`; a balancer that leaves the config leaves the
state at once (decisions.md row 22).

Its knowledge lives in a :class:`GeneratorMemory` owned by the supervisor,
so a restarted generator carries on where the crashed one stopped.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
import trio

from kglb import BalancerState, DataPlaneState
from kglb.generator import Generated, generate

__all__ = ["COALESCE", "SETTLE", "Expect", "GeneratorMemory", "run_generator"]

log = structlog.get_logger()

#: Minimum seconds between two generations: changes within it are gathered.
#: A generation costs ~1-3 ms at 10k reals (only changed balancers are hashed
#: and validated again, only changed services planned), so 50 a second at most
#: is a fraction of a core, and a change that follows another waits < 20 ms.
COALESCE = 0.02
#: Seconds a change after a quiet spell waits for the changes that came with it
#: (balancers woken by one batch of results publish within a few scheduling rounds).
SETTLE = 0.002


@dataclass(frozen=True, slots=True, kw_only=True)
class Expect:
    """The balancers of the current config, by identity, in config order."""

    identities: tuple[str, ...]


class GeneratorMemory:
    """What the generator knows, kept across its restarts."""

    __slots__ = ("desired", "generated", "invalid", "order", "ready", "sent", "states")

    def __init__(self) -> None:
        self.order: tuple[str, ...] | None = None  # None until the first Expect
        self.states: dict[str, BalancerState] = {}
        self.ready = False  # every expected balancer published once
        self.generated: Generated | None = None
        self.desired: DataPlaneState | None = None  # the last state sent to the writer
        self.invalid = 0  # generations that failed validation
        self.sent = 0

    def absorb(self, message: BalancerState | Expect) -> None:
        if isinstance(message, Expect):
            self.order = message.identities
            wanted = set(message.identities)
            for identity in [i for i in self.states if i not in wanted]:
                del self.states[identity]
        elif self.order is not None and message.identity in self.order:
            self.states[message.identity] = message
        # A state of a balancer not in the config is a late one from a removed
        # balancer: dropped.


async def run_generator(
    receive: trio.MemoryReceiveChannel[BalancerState | Expect],
    send: trio.MemorySendChannel[DataPlaneState],
    *,
    memory: GeneratorMemory,
    coalesce: float = COALESCE,
    settle: float = SETTLE,
    task_status=trio.TASK_STATUS_IGNORED,
) -> None:
    """Generate until ``receive`` is closed. Neither channel is closed here (the supervisor owns them)."""
    task_status.started()
    await _generate(send, memory)  # a restarted generator may owe the writer a state
    last = -float("inf")
    while True:
        try:
            memory.absorb(await receive.receive())
        except trio.EndOfChannel:
            return
        # The first change after a quiet spell goes out after ``settle`` (long
        # enough for states published together to come together); a change
        # within ``coalesce`` of the last generation waits for the end of that
        # window, so a burst still gives the writer one state.
        await trio.sleep_until(max(last + coalesce, trio.current_time() + settle))
        while True:
            try:
                memory.absorb(receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        await _generate(send, memory)
        last = trio.current_time()


async def _generate(send: trio.MemorySendChannel[DataPlaneState], memory: GeneratorMemory) -> None:
    if memory.order is None:
        return
    if not memory.ready:
        if any(identity not in memory.states for identity in memory.order):
            return
        memory.ready = True
    states = [memory.states[i] for i in memory.order if i in memory.states]
    generated = generate(states, memory.generated)
    memory.generated = generated
    if generated.state is None:
        memory.invalid += 1
        log.error("generated state is invalid; the data plane keeps the previous one",
                  problems=list(generated.problems))
        return
    if generated.state == memory.desired:
        return
    memory.desired = generated.state
    memory.sent += 1
    await send.send(generated.state)

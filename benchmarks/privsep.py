"""The cost of privilege separation per desired state, beside what the writer does anyway.

``python -m benchmarks privsep --reals 10000`` builds the desired state of N
reals (500 per VIP, one real changing weight per state, as a health flip
does) and measures, per state, on this machine and in this run:

* baseline: ``kglb.plan.plan`` of the change — the writer's own work for each
  state in one-process mode (what a state costs without privsep);
* privsep CPU: encode (unprivileged side) + frame + read + decode + admit
  (writer) of the same state — the work the process boundary adds (only the
  changed balancer travels; every 100th state goes whole, not measured here);
* privsep latency: a state sent by ``WriterProxy`` until ``WriterServer``
  hands it to the writer's channel, over a real socketpair (both ends in this
  process, so both sides' CPU is on one loop: an upper bound).

Each figure is printed with its ratio to the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace

import trio

from actors.writer_proxy import WriterProxy
from actors.writer_server import WriterServer
from kglb import DataPlaneState, LinkAddress, Owned, Real, RealKey, Service, ServiceKey, ServiceState
from kglb.config import BalancerConfig, CheckerConfig, Config, DummyCheck
from kglb.plan import plan
from kglb.privsep import FrameReader, admit, allowed_by, decode_to_writer, encode_frame
from kglb.privsep import StateFrame, encode_to_writer

PER_VIP = 500


def _world(n: int) -> tuple[Config, DataPlaneState]:
    balancers, services, addresses = [], [], []
    for v in range((n + PER_VIP - 1) // PER_VIP):
        vip = f"10.{100 + v // 250}.{v % 250}.1"
        key = ServiceKey.tcp(vip, 80)
        count = min(PER_VIP, n - v * PER_VIP)
        reals = tuple(Real(key=RealKey(address=f"10.{(v * PER_VIP + i) // 65536 + 1}."
                                       f"{(v * PER_VIP + i) // 256 % 256}.{(v * PER_VIP + i) % 256}",
                                       port=8080), weight=1000, hostname=f"r{v}-{i}")
                      for i in range(count))
        balancers.append(BalancerConfig(name=f"b{v}", setup_name="bench", service=Service(key=key),
                                        port=8080, checker=CheckerConfig(check=DummyCheck())))
        services.append(ServiceState(service=Service(key=key), reals=reals, name=f"b{v}"))
        addresses.append(LinkAddress(address=vip))
    return Config(balancers=tuple(balancers)), DataPlaneState(services=tuple(services),
                                                               addresses=tuple(addresses))


def _flip(state: DataPlaneState, i: int) -> DataPlaneState:
    services = list(state.services)
    s = services[i % len(services)]
    reals = list(s.reals)
    j = i * 7 % len(reals)
    reals[j] = replace(reals[j], weight=0 if reals[j].weight else 1000)
    services[i % len(services)] = replace(s, reals=tuple(reals))
    return replace(state, services=tuple(services))


def _median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def measure_cpu(config: Config, state: DataPlaneState, rounds: int) -> tuple[float, float]:
    allowed = allowed_by(config)
    owned = Owned(services=frozenset(s.key for s in state.services),
                  addresses=frozenset(state.addresses))
    base, cost = [], []
    current = state
    for i in range(rounds):
        desired = _flip(current, i)
        t = time.process_time()
        plan(current, desired, owned)
        base.append(time.process_time() - t)
        t = time.process_time()
        # Only what changed travels: both ends know the previous state's services.
        sent = current.service_map()
        data = encode_frame(encode_to_writer(StateFrame(sequence=i + 1, state=desired), sent))
        (payload,) = FrameReader().feed(data)
        frame = decode_to_writer(payload, current.service_map())
        problems = admit(frame.state, allowed)
        cost.append(time.process_time() - t)
        assert not problems and frame.state == desired
        current = desired
    return _median_ms(base), _median_ms(cost)


async def measure_latency(config: Config, state: DataPlaneState, rounds: int) -> float:
    class _Writer:  # the server only asks the writer for statistics
        def statistics(self):
            from actors.writer import WriterStatistics
            return WriterStatistics()

    server = WriterServer(_Writer(), allowed_by(config))
    a, b = trio.socket.socketpair()
    proxy = WriterProxy(trio.SocketStream(a))
    send, receive = trio.open_memory_channel(0)
    times = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve, trio.SocketStream(b))
        nursery.start_soon(proxy.run, receive)
        current = state
        for i in range(rounds):
            current = _flip(current, i)
            t = time.perf_counter()
            await send.send(current)
            got = await server.receive_states.receive()
            times.append(time.perf_counter() - t)
            assert got == current
        nursery.cancel_scope.cancel()
    return _median_ms(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks privsep", description=__doc__.split("\n")[0])
    p.add_argument("--reals", default="10000", help="comma-separated N [10000]")
    p.add_argument("--rounds", type=int, default=20, help="states per N [20]")
    args = p.parse_args(argv)
    print(f"{'reals':>7} {'plan ms (baseline)':>19} {'privsep CPU ms':>15} {'ratio':>6} "
          f"{'privsep latency ms':>19} {'ratio':>6}")
    for n in (int(x) for x in args.reals.split(",")):
        config, state = _world(n)
        base, cost = measure_cpu(config, state, args.rounds)
        latency = trio.run(measure_latency, config, state, args.rounds)
        print(f"{n:>7} {base:>19.2f} {cost:>15.2f} {cost / base:>6.1f} {latency:>19.2f} "
              f"{latency / base:>6.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

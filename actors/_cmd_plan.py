"""``kglb-trio plan --config FILE``: what starting now would change in the kernel.

The desired state is built from the config alone, without any health
information, exactly as a fresh start sees it before the first checks: every
real is provisional (an existing real keeps its kernel weight, a new one is
added with weight 0) and nothing is announced yet. The kernel is read through
``IpvsDataPlane`` (ownership from ``--state-file``), and the plan is printed
one operation per line, ipvsadm-style, or "no changes". Nothing is applied.

Each balancer's source is asked once, by the discovery actor a running
instance uses (static hosts, a file, DNS, etcd), and host names are resolved
once (with each balancer's ``resolve_family``); a real that does not resolve is
left out, with a warning, as a running instance would. Every balancer's source
and its state go to stderr, the plan to stdout.
Routes are not shown: they live in the BGP speaker, not in the kernel.

Exit status (``exit_codes``): OK plan printed, CONFIG bad config or an invalid
desired state, HOST the kernel cannot be read (no ip_vs, no CAP_NET_ADMIN).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import trio

from kglb import DataPlaneState
from kglb.balancer import Upstream, balancer_state
from kglb.config import Config, ConfigError
from kglb.discovery import Endpoints
from kglb.fwmark import FwmarkExhausted, FwmarkPool
from kglb.generator import generate
from kglb.plan import plan
from kglb.pretty import render_plan

from . import logs
from .config_file import read_config
from .dataplane import DataPlane
from .exit_codes import ExitCode
from .ownership import load_owned
from .discovery import DiscoveryMemory, SourceStatus, run_discovery

#: A source that has not answered after this long is reported and planned with no reals.
DISCOVERY_TIMEOUT = 15.0


def main(args: argparse.Namespace) -> int:
    logs.configure(level="warning")  # stdout is the plan; only trouble goes to stderr
    try:
        config = read_config(args.config)
    except ConfigError as e:
        for problem in e.problems:
            print(problem, file=sys.stderr)
        return ExitCode.CONFIG
    return trio.run(print_plan, config, args.state_file)


async def print_plan(
    config: Config, state_file: str, open_dataplane: Callable[[list[str]], DataPlane] | None = None
) -> int:
    """Print the plan for ``config``; the exit status. ``open_dataplane(links)``
    defaults to ``IpvsDataPlane``."""
    desired, problems = await desired_without_health(config)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if desired is None:
        return ExitCode.CONFIG
    try:
        current = await _read_kernel(config, open_dataplane or _ipvs)
    except (OSError, ImportError) as e:
        print(f"kglb-trio plan: cannot read the kernel's IPVS table: {e} "
              "(load ip_vs with `modprobe ip_vs`; run as root or with CAP_NET_ADMIN)",
              file=sys.stderr)
        return ExitCode.HOST
    if not Path(state_file).exists():
        print(f"note: no ownership record at {state_file}: nothing outside the config "
              "would be removed", file=sys.stderr)
    ops = plan(current, desired, load_owned(state_file))
    for line in render_plan(ops):
        print(line)
    return ExitCode.OK


async def desired_without_health(config: Config) -> tuple[DataPlaneState | None, list[str]]:
    """The state a fresh start wants before any check: provisional reals, no routes.

    Returns ``(state, warnings)``; ``state`` is None when the generator finds
    the state invalid (the warnings say why).
    """
    problems: list[str] = []
    pool = FwmarkPool()
    states = []
    for balancer in config.balancers:
        upstreams = []
        marks: dict[str, int] = {}
        endpoints, source = await _discover(balancer)
        if source is not None and (source.kind != "static" or not source.up):
            state = "up" if source.up else f"DOWN ({source.error or 'no answer yet'})"
            problems.append(f"{balancer.name}: source {source.kind} {source.detail}: {state}, "
                            f"{source.endpoints} reals")
        for e in endpoints:
            address = e.address
            if address is None:
                problems.append(f"{balancer.name}: {e.host} left out: it does not resolve")
                continue
            upstreams.append(Upstream(host=e.host, address=address, port=e.port, weight=e.weight))
            if balancer.enable_fwmarks:
                try:
                    marks[address] = pool.allocate(address)
                except FwmarkExhausted as e:
                    problems.append(f"{balancer.name}: {e}")
        states.append(balancer_state(balancer, upstreams, initial=True, fwmarks=marks))
    generated = generate(states)
    problems.extend(generated.problems)
    if generated.state is None:
        return None, problems
    return replace(generated.state, routes=()), problems


async def _discover(balancer) -> tuple[Endpoints, SourceStatus | None]:
    """One answer of the balancer's source, as a running instance's discovery actor gets it."""
    memory = DiscoveryMemory()
    send, receive = trio.open_memory_channel[Endpoints](math.inf)
    with trio.move_on_after(DISCOVERY_TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(run_discovery, balancer, memory=memory, send=send))
            nursery.cancel_scope.cancel()
    return memory.sent or Endpoints(), memory.status()


def _ipvs(links: list[str]) -> DataPlane:
    from .dataplane.ipvs import IpvsDataPlane  # pyroute2 only when the kernel is needed

    return IpvsDataPlane(links)


async def _read_kernel(
    config: Config, open_dataplane: Callable[[list[str]], DataPlane]
) -> DataPlaneState:
    links = sorted({b.link for b in config.balancers} | {"lo"})
    dataplane = open_dataplane(links)
    try:
        return await dataplane.read()
    finally:
        await dataplane.aclose()

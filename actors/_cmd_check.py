"""``kglb-trio --config FILE --check``: validate a config and summarise it.

One pass: ``read_config`` reports every format and rule problem with its path
(exit CONFIG); then every host name is resolved once, as a start would, and a
name that does not resolve now is a warning (the run leaves it out until it
does). Prints one line per balancer and the warnings to stdout and exits OK;
with ``--strict`` any warning fails the check with CONFIG, for CI pipelines.
"""

from __future__ import annotations

import argparse
import sys

import trio

from kglb.config import BalancerConfig, Config, ConfigError
from kglb.discovery import describe
from kglb.pretty import service_options

from .config_file import read_config
from .exit_codes import ExitCode
from .resolver import ResolveError, literal, resolve_host

#: A name that takes longer than this to resolve is reported as not resolving.
RESOLVE_TIMEOUT = 5.0
#: Names resolved at once (a config may list thousands).
RESOLVE_CONCURRENCY = 128

resolve = resolve_host  # replaced in tests


def main(args: argparse.Namespace) -> int:
    try:
        config = read_config(args.config)
    except ConfigError as e:
        for problem in e.problems:  # each starts with the file name
            print(problem, file=sys.stderr)
        return ExitCode.CONFIG
    warnings = list(config.warnings) + trio.run(unresolved_hosts, config)
    for line in summary(config):
        print(line)
    for warning in warnings:
        print(f"warning: {warning}")
    if getattr(args, "strict", False) and warnings:
        print(f"{args.config}: {len(warnings)} warning{'s' if len(warnings) != 1 else ''}, "
              "failing (--strict)", file=sys.stderr)
        return ExitCode.CONFIG
    print(f"{args.config}: OK, {len(config.balancers)} balancer"
          f"{'s' if len(config.balancers) != 1 else ''}")
    return ExitCode.OK


async def unresolved_hosts(config: Config) -> list[str]:
    """A warning, with its path, for every host name that does not resolve now."""
    where: dict[tuple[str, object], list[str]] = {}
    for i, balancer in enumerate(config.balancers):
        for j, host in enumerate(balancer.hosts):
            if literal(host) is None:
                path = f"balancers[{i}].upstreamDiscovery.staticAttributes.hosts[{j}]"
                where.setdefault((host, balancer.resolve_family), []).append(path)
    failures: dict[tuple[str, object], str] = {}
    limiter = trio.CapacityLimiter(RESOLVE_CONCURRENCY)

    async def one(host: str, family) -> None:
        async with limiter:
            try:
                await resolve(host, family, timeout=RESOLVE_TIMEOUT)
            except ResolveError as e:
                failures[host, family] = str(e)

    async with trio.open_nursery() as nursery:
        for host, family in where:
            nursery.start_soon(one, host, family)
    return [f"{path}: {host!r} does not resolve now ({failures[host, family]}); "
            f"it is left out until it does"
            for (host, family), paths in where.items() if (host, family) in failures
            for path in paths]


def summary(config: Config) -> list[str]:
    """One line per balancer, in file order."""
    return [_line(b) for b in config.balancers]


def _line(b: BalancerConfig) -> str:
    service = b.service
    flags = ",".join(service_options(service.flags, service.scheduler, service.timeout)) or "-"
    checker = b.checker
    check = type(checker.check).__name__.removesuffix("Check").lower()
    bgp = "no bgp"
    if b.bgp is not None:
        bgp = (f"bgp {b.bgp.prefix}/{b.bgp.prefixlen} asn {b.bgp.local_asn}->{b.bgp.peer_asn} "
               f"limit {b.announce_limit_ratio:g}")
    link = f" on {b.link}" if not service.key.fwmark else ""
    hosts = f"{len(b.hosts)} host{'s' if len(b.hosts) != 1 else ''}"
    if b.source is not None:
        kind, detail = describe(b.source)
        hosts = f"{kind} discovery {detail}, maxRemoveRatio {b.max_remove_ratio:g}"
    return (f"{b.name} [{b.setup_name}]: {service.key}{link} {service.scheduler} {flags} "
            f"{b.forward.name} port {b.port}, {hosts}, "
            f"check {check} every {checker.interval_ms}ms rise {checker.rise} fall {checker.fall}"
            f"{', fwmarks' if b.enable_fwmarks else ''}, {bgp}")

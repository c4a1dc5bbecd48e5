"""``kglb-trio --config FILE --check``: validate a config and summarise it.

Prints one line per balancer and the warnings to stdout and returns 0; on a bad
config prints every problem, one per line, to stderr and returns 1.
"""

from __future__ import annotations

import argparse
import sys

from kglb import ServiceFlag
from kglb.config import BalancerConfig, Config, ConfigError
from kglb.discovery import describe

from .config_file import read_config


def main(args: argparse.Namespace) -> int:
    try:
        config = read_config(args.config)
    except ConfigError as e:
        for problem in e.problems:  # each starts with the file name
            print(problem, file=sys.stderr)
        return 1
    for line in summary(config):
        print(line)
    for warning in config.warnings:
        print(f"warning: {warning}")
    print(f"{args.config}: OK, {len(config.balancers)} balancer"
          f"{'s' if len(config.balancers) != 1 else ''}")
    return 0


def summary(config: Config) -> list[str]:
    """One line per balancer, in file order."""
    return [_line(b) for b in config.balancers]


def _line(b: BalancerConfig) -> str:
    service = b.service
    flags = ",".join(_flag_names(service)) or "-"
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


def _flag_names(service) -> list[str]:
    """ipvsadm's spellings: persistent:300, ops, sh-fallback, mh-port, ..."""
    flags, sched = service.flags, service.scheduler
    names = []
    if ServiceFlag.PERSISTENT in flags:
        names.append(f"persistent:{service.timeout}")
    if ServiceFlag.ONEPACKET in flags:
        names.append("ops")
    if ServiceFlag.SCHED1 in flags:
        names.append(f"{sched}-fallback")
    if ServiceFlag.SCHED2 in flags:
        names.append(f"{sched}-port")
    return names

"""The ``kglb-trio`` command: a thin layer that parses flags and hands over.

kglb's own flag spellings (``-config``, ``-status_port``, glog's ``-logtostderr``
and ``-v``) are accepted, so existing unit files keep working.
"""

from __future__ import annotations

import argparse
import difflib
import ipaddress
import sys
from typing import NoReturn

from .exit_codes import ExitCode

DEFAULT_STATUS_ADDRESS = "127.0.0.1:5678"
DEFAULT_STATE_FILE = "/run/kglb-trio/owned.json"
DEFAULT_USER = "kglb-trio"


COMMANDS = ("plan", "status", "drain")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a mistake in one line naming the flag (no usage block),
    and exits with ExitCode.USAGE."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see '{self.prog} --help')", file=sys.stderr)
        sys.exit(ExitCode.USAGE)


def status_address(text: str) -> str:
    """``HOST:PORT``, ``[IPV6]:PORT`` or ``:PORT``; an argparse type."""
    from .http import parse_address

    try:
        parse_address(text)
    except ValueError:
        port = text.rpartition(":")[2]
        usable = port.isdigit() and int(port) <= 65535
        example = f"127.0.0.1:{port}" if usable else DEFAULT_STATUS_ADDRESS
        raise argparse.ArgumentTypeError(
            f"{text!r} is not HOST:PORT; give e.g. {example} (or :PORT for every address)"
        ) from None
    return text


def _address(version: int | None = None):
    """An argparse type: an IP address (of ``version``, when given), canonical."""
    def parse(text: str) -> str:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            address = None
        if address is None or version not in (None, address.version):
            kind = f"IPv{version}" if version else "IP"
            raise argparse.ArgumentTypeError(f"{text!r} is not an {kind} address")
        return str(address)

    return parse


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (0: automatic)")
    return int(text)


def _neighbor(text: str) -> str:
    from kglb.bird import parse_neighbor

    try:
        parse_neighbor(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _add_config(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument("-config", "--config", dest="config", metavar="FILE", required=required,
                        help="kglb ControlPlaneConfig JSON file")


def _add_status(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-status_port", "--status-port", "--status-address", dest="status_address",
                        default=DEFAULT_STATUS_ADDRESS, metavar="HOST:PORT", type=status_address,
                        help=f"stats/status HTTP listen address (default {DEFAULT_STATUS_ADDRESS})")


def run_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="kglb-trio",
        description="L4 load-balancer control plane for Linux IPVS (kglb-compatible).",
        epilog="Other commands: 'kglb-trio plan --config FILE', 'kglb-trio status', 'kglb-trio drain'.",
    )
    _add_config(p, required=True)
    _add_status(p)
    p.add_argument("--check", action="store_true",
                   help="validate the config, print one line per balancer, and exit")
    p.add_argument("--strict", action="store_true",
                   help="with --check: warnings (e.g. a host that does not resolve) fail the check")
    p.add_argument("--dry-run", action="store_true",
                   help="run on the in-memory data plane and print every change")
    p.add_argument("--keep-on-exit", action="store_true",
                   help="leave services and VIPs in the kernel at shutdown (restart without a gap)")
    p.add_argument("--state-file", default=DEFAULT_STATE_FILE, metavar="PATH",
                   help=f"where the ownership record is kept (default {DEFAULT_STATE_FILE})")
    p.add_argument("--source-ipv4", metavar="IP", type=_address(4),
                   help="source address of tunnelled (fwmark) checks")
    p.add_argument("--source-ipv6", metavar="IP", type=_address(6),
                   help="source address of tunnelled (fwmark) checks")
    p.add_argument("--probe-workers", type=_count, default=0, metavar="N",
                   help="shard probes over N worker processes (0: automatic)")
    p.add_argument("--watch-config", action="store_true", help="reload when the config file changes")
    p.add_argument("--drain-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="longest wait for established connections on SIGUSR2/'kglb-trio drain' (300)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--privsep", action="store_true",
                      help="privilege separation even where the default would not (not root, "
                           "--dry-run): only a writer process keeps CAP_NET_ADMIN, the rest "
                           "runs as --user (the default when started as root)")
    mode.add_argument("--single-process", action="store_true",
                      help="everything in one process with every privilege, as before the split")
    p.add_argument("--user", metavar="NAME|UID[:GID]",
                   help=f"the unprivileged side's user (default {DEFAULT_USER})")
    p.add_argument("--privsep-fd", type=int, help=argparse.SUPPRESS)  # the writer's socket
    bgp = p.add_argument_group("BGP (through a local BIRD 2; off unless a neighbor is given)")
    bgp.add_argument("--bgp-neighbor", action="append", default=[], metavar="ADDR[:ASN]",
                     type=_neighbor,
                     help="a BGP peer of BIRD's; repeatable; IPv6 as [ADDR]:ASN")
    bgp.add_argument("--bgp-source-address", action="append", default=[], metavar="ADDR",
                     type=_address(),
                     help="our end of the sessions (at most one per family)")
    bgp.add_argument("--bird-socket", default="/run/bird/bird.ctl", metavar="PATH")
    bgp.add_argument("--bird-include", default="/run/bird/kglb-trio.conf", metavar="PATH",
                     help="the file kglb-trio owns; include it from bird.conf")
    bgp.add_argument("--birdc", default="birdc", metavar="PATH")
    p.add_argument("--log-format", choices=("auto", "json", "console"), default="auto")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    # glog flags of kglbd, accepted and ignored so old unit files keep working
    for flag in ("-logtostderr", "-alsologtostderr"):
        p.add_argument(flag, action="store_true", help=argparse.SUPPRESS)
    for flag in ("-v", "-stderrthreshold", "-log_dir", "-vmodule", "-log_backtrace_at"):
        p.add_argument(flag, help=argparse.SUPPRESS)
    return p


def plan_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="kglb-trio plan",
                                description="Print what would change in the kernel now, ipvsadm-style.")
    _add_config(p, required=True)
    p.add_argument("--state-file", default=DEFAULT_STATE_FILE, metavar="PATH")
    return p


def status_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="kglb-trio status",
                                description="Show a running kglb-trio's balancers and reals.")
    _add_status(p)
    p.add_argument("--json", action="store_true", help="print the raw status JSON")
    return p


def drain_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kglb-trio drain",
                                description="Take this host out of the ECMP group without resets, then stop"
                                            " the running kglb-trio (it withdraws its routes, waits the hold"
                                            " time and serves established connections first).")
    _add_status(p)
    p.add_argument("--no-wait", action="store_true", help="return once the drain has begun")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        return _dispatch(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:  # Ctrl-C in --check, plan or status (run handles SIGINT itself)
        print("kglb-trio: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED


def _dispatch(argv: list[str]) -> int:
    if argv[:1] and not argv[0].startswith("-") and argv[0] not in COMMANDS:
        return _unknown_command(argv[0])
    if argv[:1] == ["plan"]:
        from . import _cmd_plan

        return _cmd_plan.main(plan_parser().parse_args(argv[1:]))
    if argv[:1] == ["drain"]:
        from . import _cmd_drain

        return _cmd_drain.main(drain_parser().parse_args(argv[1:]))
    if argv[:1] == ["status"]:
        from . import _cmd_status

        return _cmd_status.main(status_parser().parse_args(argv[1:]))
    parser = run_parser()
    args = parser.parse_args(argv)
    if args.strict and not args.check:
        parser.error("--strict works with --check only (it makes --check's warnings fatal)")
    if args.user is not None and args.single_process:
        parser.error("--user names privilege separation's unprivileged side; "
                     "--single-process has none")
    if args.check:
        from . import _cmd_check

        return _cmd_check.main(args)
    from . import _cmd_run

    args.argv = argv  # privilege separation starts the unprivileged side with the same flags
    return _cmd_run.main(args)


def _unknown_command(word: str) -> int:
    close = difflib.get_close_matches(word, COMMANDS, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    print(f"kglb-trio: unknown command {word!r} (commands: {', '.join(COMMANDS)}; "
          f"to run: kglb-trio --config FILE){hint}", file=sys.stderr)
    return ExitCode.USAGE


if __name__ == "__main__":
    sys.exit(main())

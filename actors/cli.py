"""The ``kglb-trio`` command: a thin layer that parses flags and hands over.

kglb's own flag spellings (``-config``, ``-status_port``, glog's ``-logtostderr``
and ``-v``) are accepted, so existing unit files keep working.
"""

from __future__ import annotations

import argparse
import sys

DEFAULT_STATUS_ADDRESS = "127.0.0.1:5678"
DEFAULT_STATE_FILE = "/run/kglb-trio/owned.json"
DEFAULT_USER = "kglb-trio"


def _add_config(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument("-config", "--config", dest="config", metavar="FILE", required=required,
                        help="kglb ControlPlaneConfig JSON file")


def _add_status(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-status_port", "--status-port", "--status-address", dest="status_address",
                        default=DEFAULT_STATUS_ADDRESS, metavar="HOST:PORT",
                        help=f"stats/status HTTP listen address (default {DEFAULT_STATUS_ADDRESS})")


def run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kglb-trio",
        description="L4 load-balancer control plane for Linux IPVS (kglb-compatible).",
        epilog="Other commands: 'kglb-trio plan --config FILE', 'kglb-trio status'.",
    )
    _add_config(p, required=True)
    _add_status(p)
    p.add_argument("--check", action="store_true",
                   help="validate the config, print one line per balancer, and exit")
    p.add_argument("--dry-run", action="store_true",
                   help="run on the in-memory data plane and print every change")
    p.add_argument("--keep-on-exit", action="store_true",
                   help="leave services and VIPs in the kernel at shutdown (restart without a gap)")
    p.add_argument("--state-file", default=DEFAULT_STATE_FILE, metavar="PATH",
                   help=f"where the ownership record is kept (default {DEFAULT_STATE_FILE})")
    p.add_argument("--source-ipv4", metavar="IP", help="source address of tunnelled (fwmark) checks")
    p.add_argument("--source-ipv6", metavar="IP", help="source address of tunnelled (fwmark) checks")
    p.add_argument("--probe-workers", type=int, default=0, metavar="N",
                   help="shard probes over N worker processes (0: automatic)")
    p.add_argument("--watch-config", action="store_true", help="reload when the config file changes")
    p.add_argument("--privsep", action="store_true",
                   help="only a writer process keeps CAP_NET_ADMIN; the rest runs as --user")
    p.add_argument("--user", default=DEFAULT_USER, metavar="NAME|UID[:GID]",
                   help=f"the unprivileged side's user with --privsep (default {DEFAULT_USER})")
    p.add_argument("--privsep-fd", type=int, help=argparse.SUPPRESS)  # the writer's socket
    bgp = p.add_argument_group("BGP (through a local BIRD 2; off unless a neighbor is given)")
    bgp.add_argument("--bgp-neighbor", action="append", default=[], metavar="ADDR[:ASN]",
                     help="a BGP peer of BIRD's; repeatable; IPv6 as [ADDR]:ASN")
    bgp.add_argument("--bgp-source-address", action="append", default=[], metavar="ADDR",
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
    p = argparse.ArgumentParser(prog="kglb-trio plan",
                                description="Print what would change in the kernel now, ipvsadm-style.")
    _add_config(p, required=True)
    p.add_argument("--state-file", default=DEFAULT_STATE_FILE, metavar="PATH")
    return p


def status_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kglb-trio status",
                                description="Show a running kglb-trio's balancers and reals.")
    _add_status(p)
    p.add_argument("--json", action="store_true", help="print the raw status JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["plan"]:
        from . import _cmd_plan

        return _cmd_plan.main(plan_parser().parse_args(argv[1:]))
    if argv[:1] == ["status"]:
        from . import _cmd_status

        return _cmd_status.main(status_parser().parse_args(argv[1:]))
    args = run_parser().parse_args(argv)
    if args.check:
        from . import _cmd_check

        return _cmd_check.main(args)
    from . import _cmd_run

    args.argv = argv  # --privsep starts the unprivileged side with the same flags
    return _cmd_run.main(args)


if __name__ == "__main__":
    sys.exit(main())

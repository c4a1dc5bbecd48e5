"""Preflight: can this host run the data plane, and do its sysctls suit the chosen modes?

``preflight()`` only reads files under ``/proc`` (a different root can be
given, which is how it is tested). Errors mean the kernel cannot be driven at
all; warnings name a sysctl that breaks or degrades a mode in use, and the
command that fixes it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from pathlib import Path

from actors.dataplane._ipvs_socket import IpvsSocket
from kglb import ForwardMethod, Protocol
from kglb.config import BalancerConfig

CAP_NET_ADMIN = 12


def preflight(
    *,
    forwards: Collection[ForwardMethod] = (),
    tunnelled_checks: bool = False,
    sloppy: Collection[str] = (),
    proc: Path = Path("/proc"),
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Return ``(errors, warnings)`` for a data plane using ``forwards``.

    ``tunnelled_checks`` is true when some balancer checks its reals through
    the IPVS tunnel (``enable_fwmarks``); ``sloppy`` names the
    ``net.ipv4.vs.sloppy_*`` sysctls a failover needs (``sloppy_sysctls``).
    """
    errors: list[str] = []
    warnings: list[str] = []
    if not (proc / "net/ip_vs").exists():
        errors.append("the ip_vs kernel module is not loaded (no /proc/net/ip_vs): run `modprobe ip_vs`"
                      " and add ip_vs to /etc/modules-load.d/")
    if not _has_capability(proc, CAP_NET_ADMIN):
        errors.append("CAP_NET_ADMIN is missing: run as root or with CAP_NET_ADMIN"
                      " (needed for IPVS, VIP addresses and SO_MARK)")
    vs = proc / "sys/net/ipv4/vs"
    if _sysctl(vs / "expire_nodest_conn") == 0:
        warnings.append("net.ipv4.vs.expire_nodest_conn=0: clients of a deleted real hang until their"
                        " connection times out; set `sysctl -w net.ipv4.vs.expire_nodest_conn=1`")
    if ForwardMethod.MASQ in forwards:
        if _sysctl(proc / "sys/net/ipv4/ip_forward") == 0:
            warnings.append("net.ipv4.ip_forward=0: MASQ replies from the reals are not forwarded;"
                            " set `sysctl -w net.ipv4.ip_forward=1`")
        conntrack_loaded = (proc / "sys/net/netfilter/nf_conntrack_max").exists()
        if conntrack_loaded and _sysctl(vs / "conntrack") == 0:
            warnings.append("net.ipv4.vs.conntrack=0 with nf_conntrack loaded: netfilter sees MASQ"
                            " connections as INVALID and stateful rules drop them;"
                            " set `sysctl -w net.ipv4.vs.conntrack=1`")
    for name in sorted(sloppy):
        if _sysctl(vs / name) != 1:
            warnings.append(f"net.ipv4.vs.{name} is not 1 while a balancer uses mh behind BGP: when ECMP"
                            " moves a flow to this host (another balancer failed or was drained) IPVS"
                            " only schedules a connection's first packet and the flow is reset; set"
                            f" `sysctl -w net.ipv4.vs.{name}=1` (mh then sends it to the same real)")
    if tunnelled_checks:
        strict = _rp_filtering_links(proc)
        if strict:
            warnings.append(f"rp_filter is on for {', '.join(strict)}: replies to tunnelled health checks"
                            " come from the VIP and are dropped; set net.ipv4.conf.all.rp_filter=0 and"
                            " net.ipv4.conf.<link>.rp_filter=0 on those links")
    return tuple(errors), tuple(warnings)


def sloppy_sysctls(balancers: Iterable[BalancerConfig]) -> frozenset[str]:
    """The sloppy sysctls that balancers using ``mh`` behind BGP need.

    With ECMP a flow may reach a host that has no IPVS entry for it; only with
    sloppy_tcp (sloppy_sctp) does IPVS schedule its mid-stream packets, and mh
    picks the real every balancer picks. UDP needs none (every packet may
    create an entry); a fwmark service may carry TCP and SCTP, so it needs both.
    """
    needed: set[str] = set()
    for b in balancers:
        if b.bgp is None or b.service.scheduler != "mh":
            continue
        if b.key.fwmark:
            needed |= {"sloppy_tcp", "sloppy_sctp"}
        elif b.key.protocol is Protocol.TCP:
            needed.add("sloppy_tcp")
    return frozenset(needed)


def _sysctl(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _has_capability(proc: Path, capability: int) -> bool:
    try:
        status = (proc / "self/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> capability & 1)
    return False


def _rp_filtering_links(proc: Path) -> list[str]:
    # the kernel applies max(conf/all, conf/<link>) to each link
    conf = proc / "sys/net/ipv4/conf"
    every = _sysctl(conf / "all/rp_filter") or 0
    links = sorted(p.name for p in conf.iterdir() if p.name not in ("all", "default")) if conf.is_dir() else []
    return [link for link in links if max(every, _sysctl(conf / link / "rp_filter") or 0) > 0]


def probe_ipvs_family() -> str | None:
    """Open an IPVS generic-netlink socket once (blocking, a few ms): ``None`` if
    the kernel answers, else the reason (no ip_vs, no permission...)."""
    try:
        IpvsSocket().close()
    except OSError as exc:
        return str(exc)
    return None

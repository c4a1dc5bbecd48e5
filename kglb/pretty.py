"""Text renderings for people: operations as ipvsadm / ip commands, states as kglb's dump.

``render_operation`` prints an operation the way an operator would type it
(``-A -t 10.0.0.1:80 -s rr``, ``-a -t 10.0.0.1:80 -r 10.1.0.1:80 -i -w 1000``,
``ip addr add 10.0.0.1/32 dev lo``), so ``kglb-trio plan`` and ``--dry-run``
read like an ``ipvsadm`` script. Route operations have no standard tool and are
spelled ``announce``/``withdraw`` with their BGP attributes.

``render_state`` is kglb's ``PrettyDataPlaneState`` (kglb.md §5.7), extended
with flags and with IPv6 in brackets.
"""

from __future__ import annotations

from collections.abc import Iterable

from ._model import (
    AddAddress,
    AddReal,
    AddService,
    AnnounceRoute,
    DataPlaneState,
    DeleteAddress,
    DeleteReal,
    DeleteService,
    Family,
    ForwardMethod,
    LinkAddress,
    Operation,
    Protocol,
    Real,
    RealKey,
    Route,
    Service,
    ServiceFlag,
    ServiceKey,
    UpdateReal,
    UpdateService,
    WithdrawRoute,
)

__all__ = ["flag_names", "render_operation", "render_plan", "render_state", "service_options"]

_FORWARD_OPTION = {ForwardMethod.TUNNEL: "-i", ForwardMethod.MASQ: "-m", ForwardMethod.DROUTE: "-g"}
_FORWARD_NAME = {ForwardMethod.TUNNEL: "Tunnel", ForwardMethod.MASQ: "Masq",
                 ForwardMethod.DROUTE: "Route"}
#: Schedulers whose SCHED1/SCHED2 flags ipvsadm names after themselves.
_NAMED_SCHED_FLAGS = {"sh", "mh"}


def flag_names(service: Service) -> list[str]:
    """ipvsadm's names of the scheduler flags: ``sh-fallback``, ``mh-port``, ``flag-3``."""
    return _sched_flag_names(service.flags, service.scheduler)


def _sched_flag_names(flags: ServiceFlag, scheduler: str) -> list[str]:
    names = []
    bits = ((ServiceFlag.SCHED1, 1, "fallback"), (ServiceFlag.SCHED2, 2, "port"),
            (ServiceFlag.SCHED3, 3, ""))
    for bit, number, suffix in bits:
        if bit in flags:
            named = scheduler in _NAMED_SCHED_FLAGS and suffix
            names.append(f"{scheduler}-{suffix}" if named else f"flag-{number}")
    return names


def service_options(flags: ServiceFlag, scheduler: str, timeout: int | None = None) -> list[str]:
    """Every flag of a service as ``--check``, ``--dry-run`` and ``status`` print it:
    ``persistent:300``, ``mh-fallback``, ``mh-port``, ``ops`` (``persistent`` alone when
    the timeout is not known)."""
    names = _sched_flag_names(flags, scheduler)
    if ServiceFlag.PERSISTENT in flags:
        names.insert(0, "persistent" if timeout is None else f"persistent:{timeout}")
    if ServiceFlag.ONEPACKET in flags:
        names.append("ops")
    return names


def _service(key: ServiceKey) -> str:
    if key.fwmark:
        return f"-f {key.fwmark}" + (" -6" if key.family is Family.INET6 else "")
    option = "-t" if key.protocol is Protocol.TCP else "-u"
    host = f"[{key.address}]" if key.family is Family.INET6 else key.address
    return f"{option} {host}:{key.port}"


def _real(key: RealKey) -> str:
    # A fwmark service's reals have port 0: ipvsadm takes the bare address then.
    if key.port == 0:
        return f"[{key.address}]" if ":" in key.address else key.address
    return str(key)


def _service_options(service: Service) -> str:
    text = f"{_service(service.key)} -s {service.scheduler}"
    if ServiceFlag.PERSISTENT in service.flags:
        text += f" -p {service.timeout}"
    if ServiceFlag.ONEPACKET in service.flags:
        text += " -o"
    if names := flag_names(service):
        text += f" -b {','.join(names)}"
    return text


def _real_options(key: ServiceKey, real: Real) -> str:
    text = f"{_service(key)} -r {_real(real.key)} {_FORWARD_OPTION[real.forward]} -w {real.weight}"
    return text + (f"  # {real.hostname}" if real.hostname else "")


def _address(address: LinkAddress) -> str:
    return f"{address.address}/{address.prefixlen} dev {address.link}"


def _route(route: Route) -> str:
    text = f"{route.prefix} local-as {route.local_asn} peer-as {route.peer_asn}"
    if route.communities:
        text += f" communities {','.join(route.communities)}"
    return text + (f" hold {route.hold_time_ms}ms" if route.hold_time_ms else "")


def render_operation(op: Operation) -> str:
    """One line: ipvsadm arguments, an ``ip addr`` command, or ``announce``/``withdraw``."""
    match op:
        case AddService(service=s):
            return f"-A {_service_options(s)}"
        case UpdateService(service=s):
            return f"-E {_service_options(s)}"
        case DeleteService(service=key):
            return f"-D {_service(key)}"
        case AddReal(service=key, real=real):
            return f"-a {_real_options(key, real)}"
        case UpdateReal(service=key, real=real):
            return f"-e {_real_options(key, real)}"
        case DeleteReal(service=key, real=rk):
            return f"-d {_service(key)} -r {_real(rk)}"
        case AddAddress(address=a):
            return f"ip addr add {_address(a)}"
        case DeleteAddress(address=a):
            return f"ip addr del {_address(a)}"
        case AnnounceRoute(route=route):
            return f"announce {_route(route)}"
        case WithdrawRoute(route=route):
            return f"withdraw {_route(route)}"
    raise TypeError(f"not an operation: {op!r}")


def render_plan(ops: Iterable[Operation]) -> list[str]:
    """One line per operation, in order; ``["no changes"]`` for an empty plan."""
    lines = [render_operation(op) for op in ops]
    return lines or ["no changes"]


def render_state(state: DataPlaneState) -> list[str]:
    """kglb's ipvsadm-like dump of a whole state (kglb.md §5.7), one list item per line."""
    lines = ["----- Balancers", "Name Prot LocalAddress:Port Scheduler Flags",
             "  -> RemoteAddress:Port Forward Weight"]
    for s in state.services:
        key = s.key
        if key.fwmark:
            where = f"FWM  {key.fwmark}"
        else:
            host = f"[{key.address}]" if key.family is Family.INET6 else key.address
            where = f"{key.protocol.name}  {host}:{key.port}"
        flags = service_options(s.service.flags, s.service.scheduler, s.service.timeout)
        head = f"{s.name or '-'} {where} {s.service.scheduler}"
        lines.append(head + (f" {','.join(flags)}" if flags else ""))
        for r in s.reals:
            name = f"{r.hostname}|{r.key}" if r.hostname else str(r.key)
            lines.append(f"  -> {name} {_FORWARD_NAME[r.forward]} {r.weight}")
    lines += ["----- Dynamic Route Map", "LocalAsn PeerAsn Community Prefix/Prefixlen"]
    lines += [f" - {r.local_asn} {r.peer_asn} {','.join(r.communities)} {r.prefix}"
              for r in state.routes]
    lines.append("----- Address Map")
    lines += [f" - {a.address}%{a.link}" for a in state.addresses]
    return lines

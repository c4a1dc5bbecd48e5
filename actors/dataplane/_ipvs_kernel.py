"""The blocking half of ``IpvsDataPlane``: reads and writes IPVS and VIP addresses.

A ``KernelSession`` is created, used and closed by one thread (the data
plane's netlink thread). IPVS goes through our own pipelined generic-netlink
socket; addresses through pyroute2's ``IPRoute``. Kernel errors are translated
to ``OperationError`` here, once.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from kglb import (
    AddAddress,
    AddReal,
    AddService,
    DataPlaneState,
    DeleteAddress,
    DeleteReal,
    DeleteService,
    LinkAddress,
    Operation,
    ServiceKey,
    ServiceState,
    UpdateReal,
    UpdateService,
)
from kglb import _ipvs_wire as wire

from ._base import OperationError, RealCounters, ServiceCounters
from ._ipvs_socket import IpvsSocket

_IPVS_OPS = (AddService, UpdateService, DeleteService, AddReal, UpdateReal, DeleteReal)
_ADDRESS_OPS = (AddAddress, DeleteAddress)

Dump = list[tuple[wire.ServiceEntry, list[wire.DestEntry]]]

#: The address protocol (IFA_PROTO, Linux >= 6.1) on every VIP we add: the
#: kernel-side mark that lets a start without an ownership record still know
#: which VIPs are ours. 0-3 are the kernel's own (unspec, lo, ra, ll); 107 is
#: "k". Kernels without IFA_PROTO ignore it, and then only the record counts.
VIP_PROTO = 107


class KernelSession:
    """Netlink sockets for IPVS and for the addresses of ``links``.

    ``unrepresentable`` counts kernel objects the last read skipped because
    kglb-trio cannot model them (SCTP services, unknown schedulers, ...):
    they can only be foreign, and are left alone.
    """

    def __init__(self, links: Sequence[str]) -> None:
        self._links = tuple(links)
        self._ipvs = IpvsSocket()
        try:
            self._ipr = IPRoute()
        except BaseException:
            self._ipvs.close()
            raise
        self.unrepresentable = 0

    def close(self) -> None:
        self._ipr.close()
        self._ipvs.close()

    # ----------------------------------------------------------------- reads

    def read(self) -> DataPlaneState:
        services = [
            ServiceState(service=entry.service, reals=tuple(d.real for d in dests))
            for entry, dests in self._dump()
        ]
        return DataPlaneState(services=tuple(services), addresses=tuple(self._addresses()))

    def counters(self) -> dict[ServiceKey, ServiceCounters]:
        return {entry.service.key: _counters(entry, dests) for entry, dests in self._dump()}

    def _dump(self) -> Dump:
        skipped = 0
        out: Dump = []
        for msg in self._ipvs.dump(lambda seq: wire.dump_services_request(family=self._ipvs.family, seq=seq)):
            try:
                entry = wire.decode_service(msg)
            except wire.Unrepresentable:
                skipped += 1
                continue
            key = entry.service.key
            # a service deleted meanwhile by someone else dumps no destinations
            replies = self._ipvs.dump(
                lambda seq: wire.dump_dests_request(key, family=self._ipvs.family, seq=seq)
            )
            dests = []
            for reply in replies:
                try:
                    dests.append(wire.decode_dest(reply, key.family))
                except wire.Unrepresentable:
                    skipped += 1
            out.append((entry, dests))
        self.unrepresentable = skipped
        return out

    def _addresses(self) -> list[LinkAddress]:
        found = []
        for link in self._links:
            index = self._link_index(link)
            if index is None:
                continue  # a missing link holds no address; operations on it fail with ENODEV
            for msg in self._ipr.get_addr(index=index):
                address = msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS")
                found.append(LinkAddress(link=link, address=address))
        return found

    def marked(self) -> frozenset[LinkAddress]:
        """The addresses on the managed links that carry our mark (``VIP_PROTO``)."""
        found = set()
        for link in self._links:
            index = self._link_index(link)
            if index is None:
                continue
            for msg in self._ipr.get_addr(index=index):
                if msg.get("IFA_PROTO") == VIP_PROTO:
                    address = msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS")
                    found.add(LinkAddress(link=link, address=address))
        return frozenset(found)

    def _link_index(self, link: str) -> int | None:
        indexes = self._ipr.link_lookup(ifname=link)
        return indexes[0] if indexes else None

    # ----------------------------------------------------------------- writes

    def apply(self, ops: Sequence[Operation]) -> list[OperationError]:
        """Apply ``ops`` in order; consecutive IPVS operations go in one pipelined batch."""
        for op in ops:
            if not isinstance(op, _IPVS_OPS + _ADDRESS_OPS):
                raise TypeError(f"IpvsDataPlane does not apply {type(op).__name__}")
        failures: list[OperationError] = []
        start = 0
        while start < len(ops):
            if isinstance(ops[start], _ADDRESS_OPS):
                failure = self._address(ops[start])
                failures += [failure] if failure else []
                start += 1
                continue
            end = start
            while end < len(ops) and isinstance(ops[end], _IPVS_OPS):
                end += 1
            failures += self._ipvs_batch(ops[start:end])
            start = end
        return failures

    def _ipvs_batch(self, ops: Sequence[Operation]) -> list[OperationError]:
        requests = []
        for op in ops:
            seq = self._ipvs.next_seq()
            requests.append((seq, wire.encode_operation(op, family=self._ipvs.family, seq=seq)))
        refused = self._ipvs.transact(requests)
        return [
            OperationError(op, refused[seq].errno, refused[seq].message)
            for op, (seq, _) in zip(ops, requests)
            if seq in refused
        ]

    def _address(self, op: AddAddress | DeleteAddress) -> OperationError | None:
        target = op.address
        index = self._link_index(target.link)
        if index is None:
            return OperationError(op, errno.ENODEV, f"no link named {target.link!r}")
        mark = {"proto": VIP_PROTO} if isinstance(op, AddAddress) else {}
        command = "add" if isinstance(op, AddAddress) else "del"
        try:
            self._ipr.addr(command, index=index, address=target.address,
                           prefixlen=target.prefixlen, **mark)
        except NetlinkError as exc:
            return OperationError(op, exc.code, str(exc))
        return None


def _counters(entry: wire.ServiceEntry, dests: list[wire.DestEntry]) -> ServiceCounters:
    stats = entry.stats
    return ServiceCounters(
        key=entry.service.key,
        conns=stats.conns,
        packets_in=stats.packets_in,
        packets_out=stats.packets_out,
        bytes_in=stats.bytes_in,
        bytes_out=stats.bytes_out,
        reals=tuple(
            sorted(
                (
                    RealCounters(
                        key=d.real.key,
                        conns=d.stats.conns,
                        packets_in=d.stats.packets_in,
                        packets_out=d.stats.packets_out,
                        bytes_in=d.stats.bytes_in,
                        bytes_out=d.stats.bytes_out,
                        active_conns=d.active_conns,
                        inactive_conns=d.inactive_conns,
                    )
                    for d in dests
                ),
                key=lambda c: c.key,
            )
        ),
    )

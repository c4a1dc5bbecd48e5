"""pyroute2 0.9.7 against the real kernel: the API the data plane relies on,
and the workarounds for its two IPVS bugs (``"update"`` deletes; ``from_message``
drops the forward method)."""

import socket

from pyroute2 import IPVS, IPRoute, IPVSDest, IPVSService

TUNNEL, MASQ = 2, 0


def _raw_dests(ipvs, service):
    return {
        (attrs["IPVS_DEST_ATTR_ADDR"], attrs["IPVS_DEST_ATTR_PORT"]): (
            attrs["IPVS_DEST_ATTR_WEIGHT"],
            attrs["IPVS_DEST_ATTR_FWD_METHOD"],
        )
        for attrs in (dict(m.get("IPVS_CMD_ATTR_DEST")["attrs"]) for m in ipvs.dest("dump", service=service))
    }


def test_tcp_service_with_tunnel_and_masq_reals_reads_back():
    with IPVS() as ipvs:
        svc = IPVSService(addr="10.0.0.1", port=80, protocol=socket.IPPROTO_TCP, sched_name="wrr")
        ipvs.service("add", service=svc)
        ipvs.dest("add", service=svc, dest=IPVSDest(addr="10.2.0.11", port=80, weight=5, fwd_method=TUNNEL))
        ipvs.dest("add", service=svc, dest=IPVSDest(addr="10.2.0.12", port=8080, weight=7, fwd_method=MASQ))

        [service] = [IPVSService.from_message(m) for m in ipvs.service("dump")]
        assert (service["addr"], service["port"], service["sched_name"]) == ("10.0.0.1", 80, "wrr")
        assert _raw_dests(ipvs, service) == {("10.2.0.11", 80): (5, TUNNEL), ("10.2.0.12", 8080): (7, MASQ)}
        # the bug being worked around: the friendly key reads the class default (DR)
        friendly = {IPVSDest.from_message(m)["fwd_method"] for m in ipvs.dest("dump", service=service)}
        assert friendly == {3}


def test_set_changes_in_place_where_update_would_delete():
    with IPVS() as ipvs:
        svc = IPVSService(addr="10.0.0.1", port=80, protocol=socket.IPPROTO_TCP, sched_name="rr")
        ipvs.service("add", service=svc)
        ipvs.dest("add", service=svc, dest=IPVSDest(addr="10.2.0.11", port=80, weight=1, fwd_method=TUNNEL))
        changed = IPVSService(addr="10.0.0.1", port=80, protocol=socket.IPPROTO_TCP, sched_name="wrr")
        ipvs.service("set", service=changed)
        ipvs.dest("set", service=changed, dest=IPVSDest(addr="10.2.0.11", port=80, weight=9, fwd_method=MASQ))
        [service] = [IPVSService.from_message(m) for m in ipvs.service("dump")]
        assert service["sched_name"] == "wrr"
        assert _raw_dests(ipvs, service) == {("10.2.0.11", 80): (9, MASQ)}
        ipvs.service("update", service=changed)  # pyroute2 sends DEL_SERVICE for "update"
        assert ipvs.service("dump") == []


def test_fwmark_service_needs_a_netmask():
    with IPVS() as ipvs:
        svc = IPVSService(fwmark=42, af=socket.AF_INET, sched_name="rr", netmask="255.255.255.255")
        ipvs.service("add", service=svc)
        ipvs.dest("add", service=svc, dest=IPVSDest(addr="10.2.0.11", port=0, weight=1, fwd_method=TUNNEL))
        [service] = [IPVSService.from_message(m) for m in ipvs.service("dump")]
        assert service["fwmark"] == 42
        assert _raw_dests(ipvs, service) == {("10.2.0.11", 0): (1, TUNNEL)}


def test_vip_on_lo_added_and_removed():
    with IPRoute() as ipr:
        lo = ipr.link_lookup(ifname="lo")[0]
        ipr.addr("add", index=lo, address="10.0.0.100", prefixlen=32)
        assert "10.0.0.100" in [a.get("IFA_ADDRESS") for a in ipr.get_addr(index=lo)]
        ipr.addr("del", index=lo, address="10.0.0.100", prefixlen=32)
        assert "10.0.0.100" not in [a.get("IFA_ADDRESS") for a in ipr.get_addr(index=lo)]

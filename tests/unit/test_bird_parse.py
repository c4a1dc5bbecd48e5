"""kglb.bird, reading side: birdc's answers as BIRD 2.0.12 prints them."""

from __future__ import annotations

import pytest

from kglb import Route
from kglb.bird import ProtocolStatus, parse_protocols, parse_routes

PROTOCOLS = """\
BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     08:50:54.932  
kglb_static_v4_65000_65001 Static     kglb_v4_65000_65001 up     08:50:54.932  
kglb_65000_65001_169_254_77_2 BGP        ---        up     08:50:58.984  Established   
kglb_65000_65001_169_254_77_6 BGP        ---        start  2026-11-27    Active        Socket: Connection refused
kglb_65000_65009_10_0_0_1 BGP        ---        start  2026-11-28 08:50:54  Connect       
"""


def test_parse_protocols():
    rows = parse_protocols(PROTOCOLS)
    assert [r.name for r in rows] == [
        "device1", "kglb_static_v4_65000_65001", "kglb_65000_65001_169_254_77_2",
        "kglb_65000_65001_169_254_77_6", "kglb_65000_65009_10_0_0_1",
    ]
    assert rows[0] == ProtocolStatus(name="device1", proto="Device", table="---", state="up", info="")
    assert rows[1].table == "kglb_v4_65000_65001"
    assert rows[2].info == "Established" and rows[2].established
    assert rows[3].info == "Active        Socket: Connection refused" and not rows[3].established
    assert (rows[4].state, rows[4].info, rows[4].established) == ("start", "Connect", False)
    assert not rows[1].established  # only BGP protocols have sessions


def test_parse_protocols_refuses_what_it_does_not_understand():
    with pytest.raises(ValueError, match="unexpected line"):
        parse_protocols("BIRD 2.0.12 ready.\nsomething else\n")


ROUTES = """\
BIRD 2.0.12 ready.
Table kglb_v4_65000_65001:
10.9.0.1/32          blackhole [kglb_static_v4_65000_65001 08:52:14.280] * (200)
\tType: static univ
\tBGP.community: (65101,30000) (65102,10090)
\tBGP.large_community: (1, 2, 3)
\tkglb_hold_time_ms: 1500
                     blackhole [kglb_static_v4_65000_65001 08:52:14.280] (200)
\tType: static univ
\tkglb_hold_time_ms: 0
10.9.0.2/32          blackhole [kglb_static_v4_65000_65001 08:52:14.280] * (200)
\tType: static univ

Table master4:
192.0.2.0/24         unicast [bgp1 08:51:01.987] * (100) [AS65000i]
\tvia 169.254.77.1 on kglbt-b
\tBGP.community: (1,1)

Table kglb_v6_4200000000_65001:
2001:db8::1/128      blackhole [kglb_static_v6_4200000000_65001 08:52:14.280] * (200)
\tType: static univ
\tBGP.large_community: (4200000000, 7, 9) (1, 1, 1)
\tkglb_hold_time_ms: 250
"""


def test_parse_routes():
    assert parse_routes(ROUTES) == (
        Route(prefix="10.9.0.1/32", local_asn=65000, peer_asn=65001,
              communities=("65101:30000", "65102:10090", "1:2:3")),
        Route(prefix="10.9.0.1/32", local_asn=65000, peer_asn=65001),
        Route(prefix="10.9.0.2/32", local_asn=65000, peer_asn=65001),
        Route(prefix="2001:db8::1/128", local_asn=4200000000, peer_asn=65001,
              communities=("4200000000:7:9", "1:1:1")),
    )
    assert [r.hold_time_ms for r in parse_routes(ROUTES)] == [1500, 0, 0, 250]


def test_parse_routes_of_empty_tables():
    assert parse_routes("BIRD 2.0.12 ready.\nTable kglb_v4_65000_65001:\n") == ()
    assert parse_routes("") == ()

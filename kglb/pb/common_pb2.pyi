from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ForwardMethods(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TUNNEL: _ClassVar[ForwardMethods]
    MASQ: _ClassVar[ForwardMethods]
    DROUTE: _ClassVar[ForwardMethods]
    DR: _ClassVar[ForwardMethods]

class AddressFamily(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AF_INET: _ClassVar[AddressFamily]
    AF_INET6: _ClassVar[AddressFamily]

class IPProtocol(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TCP: _ClassVar[IPProtocol]
    UDP: _ClassVar[IPProtocol]
TUNNEL: ForwardMethods
MASQ: ForwardMethods
DROUTE: ForwardMethods
DR: ForwardMethods
AF_INET: AddressFamily
AF_INET6: AddressFamily
TCP: IPProtocol
UDP: IPProtocol

class IP(_message.Message):
    __slots__ = ("ipv4", "ipv6")
    IPV4_FIELD_NUMBER: _ClassVar[int]
    IPV6_FIELD_NUMBER: _ClassVar[int]
    ipv4: str
    ipv6: str
    def __init__(self, ipv4: _Optional[str] = ..., ipv6: _Optional[str] = ...) -> None: ...

class Stats(_message.Message):
    __slots__ = ("connections_count", "packets_in_count", "packets_out_count", "bytes_in_count", "bytes_out_count", "connections_rate", "packets_in_rate", "packets_out_rate", "bytes_in_rate", "bytes_out_rate", "active_conns_count", "inact_conns_count", "persist_conns_count")
    CONNECTIONS_COUNT_FIELD_NUMBER: _ClassVar[int]
    PACKETS_IN_COUNT_FIELD_NUMBER: _ClassVar[int]
    PACKETS_OUT_COUNT_FIELD_NUMBER: _ClassVar[int]
    BYTES_IN_COUNT_FIELD_NUMBER: _ClassVar[int]
    BYTES_OUT_COUNT_FIELD_NUMBER: _ClassVar[int]
    CONNECTIONS_RATE_FIELD_NUMBER: _ClassVar[int]
    PACKETS_IN_RATE_FIELD_NUMBER: _ClassVar[int]
    PACKETS_OUT_RATE_FIELD_NUMBER: _ClassVar[int]
    BYTES_IN_RATE_FIELD_NUMBER: _ClassVar[int]
    BYTES_OUT_RATE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_CONNS_COUNT_FIELD_NUMBER: _ClassVar[int]
    INACT_CONNS_COUNT_FIELD_NUMBER: _ClassVar[int]
    PERSIST_CONNS_COUNT_FIELD_NUMBER: _ClassVar[int]
    connections_count: int
    packets_in_count: int
    packets_out_count: int
    bytes_in_count: int
    bytes_out_count: int
    connections_rate: int
    packets_in_rate: int
    packets_out_rate: int
    bytes_in_rate: int
    bytes_out_rate: int
    active_conns_count: int
    inact_conns_count: int
    persist_conns_count: int
    def __init__(self, connections_count: _Optional[int] = ..., packets_in_count: _Optional[int] = ..., packets_out_count: _Optional[int] = ..., bytes_in_count: _Optional[int] = ..., bytes_out_count: _Optional[int] = ..., connections_rate: _Optional[int] = ..., packets_in_rate: _Optional[int] = ..., packets_out_rate: _Optional[int] = ..., bytes_in_rate: _Optional[int] = ..., bytes_out_rate: _Optional[int] = ..., active_conns_count: _Optional[int] = ..., inact_conns_count: _Optional[int] = ..., persist_conns_count: _Optional[int] = ...) -> None: ...

class UpstreamState(_message.Message):
    __slots__ = ("address", "port", "hostname", "weight", "forward_method")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    FORWARD_METHOD_FIELD_NUMBER: _ClassVar[int]
    address: IP
    port: int
    hostname: str
    weight: int
    forward_method: ForwardMethods
    def __init__(self, address: _Optional[_Union[IP, _Mapping]] = ..., port: _Optional[int] = ..., hostname: _Optional[str] = ..., weight: _Optional[int] = ..., forward_method: _Optional[_Union[ForwardMethods, str]] = ...) -> None: ...

class LoadBalancerService(_message.Message):
    __slots__ = ("ipvs_service",)
    IPVS_SERVICE_FIELD_NUMBER: _ClassVar[int]
    ipvs_service: IpvsService
    def __init__(self, ipvs_service: _Optional[_Union[IpvsService, _Mapping]] = ...) -> None: ...

class BalancerState(_message.Message):
    __slots__ = ("name", "lb_service", "upstreams")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LB_SERVICE_FIELD_NUMBER: _ClassVar[int]
    UPSTREAMS_FIELD_NUMBER: _ClassVar[int]
    name: str
    lb_service: LoadBalancerService
    upstreams: _containers.RepeatedCompositeFieldContainer[UpstreamState]
    def __init__(self, name: _Optional[str] = ..., lb_service: _Optional[_Union[LoadBalancerService, _Mapping]] = ..., upstreams: _Optional[_Iterable[_Union[UpstreamState, _Mapping]]] = ...) -> None: ...

class DynamicRoute(_message.Message):
    __slots__ = ("bgp_attributes",)
    BGP_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    bgp_attributes: BgpRouteAttributes
    def __init__(self, bgp_attributes: _Optional[_Union[BgpRouteAttributes, _Mapping]] = ...) -> None: ...

class IpvsFwmarkAttributes(_message.Message):
    __slots__ = ("address_family", "fwmark")
    ADDRESS_FAMILY_FIELD_NUMBER: _ClassVar[int]
    FWMARK_FIELD_NUMBER: _ClassVar[int]
    address_family: AddressFamily
    fwmark: int
    def __init__(self, address_family: _Optional[_Union[AddressFamily, str]] = ..., fwmark: _Optional[int] = ...) -> None: ...

class IpvsTcpAttributes(_message.Message):
    __slots__ = ("address", "port")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    address: IP
    port: int
    def __init__(self, address: _Optional[_Union[IP, _Mapping]] = ..., port: _Optional[int] = ...) -> None: ...

class IpvsUdpAttributes(_message.Message):
    __slots__ = ("address", "port")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    address: IP
    port: int
    def __init__(self, address: _Optional[_Union[IP, _Mapping]] = ..., port: _Optional[int] = ...) -> None: ...

class IpvsService(_message.Message):
    __slots__ = ("tcp_attributes", "udp_attributes", "fwmark_attributes", "scheduler", "flags", "persistence_timeout_s")
    class Flag(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        EMPTY: _ClassVar[IpvsService.Flag]
        PERSISTENT: _ClassVar[IpvsService.Flag]
        HASHED: _ClassVar[IpvsService.Flag]
        ONEPACKET: _ClassVar[IpvsService.Flag]
        SCHED1: _ClassVar[IpvsService.Flag]
        SCHED2: _ClassVar[IpvsService.Flag]
        SCHED3: _ClassVar[IpvsService.Flag]
        SH_FALLBACK: _ClassVar[IpvsService.Flag]
        SH_PORT: _ClassVar[IpvsService.Flag]
        SH_NOPORT: _ClassVar[IpvsService.Flag]
    EMPTY: IpvsService.Flag
    PERSISTENT: IpvsService.Flag
    HASHED: IpvsService.Flag
    ONEPACKET: IpvsService.Flag
    SCHED1: IpvsService.Flag
    SCHED2: IpvsService.Flag
    SCHED3: IpvsService.Flag
    SH_FALLBACK: IpvsService.Flag
    SH_PORT: IpvsService.Flag
    SH_NOPORT: IpvsService.Flag
    class Scheduler(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        RR: _ClassVar[IpvsService.Scheduler]
        WRR: _ClassVar[IpvsService.Scheduler]
        IP_VS_SCH: _ClassVar[IpvsService.Scheduler]
        LC: _ClassVar[IpvsService.Scheduler]
        WLC: _ClassVar[IpvsService.Scheduler]
        LBLC: _ClassVar[IpvsService.Scheduler]
        LBLCR: _ClassVar[IpvsService.Scheduler]
        DH: _ClassVar[IpvsService.Scheduler]
        SH: _ClassVar[IpvsService.Scheduler]
        SED: _ClassVar[IpvsService.Scheduler]
        NQ: _ClassVar[IpvsService.Scheduler]
        FO: _ClassVar[IpvsService.Scheduler]
        OVF: _ClassVar[IpvsService.Scheduler]
        MH: _ClassVar[IpvsService.Scheduler]
        TWOS: _ClassVar[IpvsService.Scheduler]
    RR: IpvsService.Scheduler
    WRR: IpvsService.Scheduler
    IP_VS_SCH: IpvsService.Scheduler
    LC: IpvsService.Scheduler
    WLC: IpvsService.Scheduler
    LBLC: IpvsService.Scheduler
    LBLCR: IpvsService.Scheduler
    DH: IpvsService.Scheduler
    SH: IpvsService.Scheduler
    SED: IpvsService.Scheduler
    NQ: IpvsService.Scheduler
    FO: IpvsService.Scheduler
    OVF: IpvsService.Scheduler
    MH: IpvsService.Scheduler
    TWOS: IpvsService.Scheduler
    TCP_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    UDP_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    FWMARK_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    SCHEDULER_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    PERSISTENCE_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    tcp_attributes: IpvsTcpAttributes
    udp_attributes: IpvsUdpAttributes
    fwmark_attributes: IpvsFwmarkAttributes
    scheduler: IpvsService.Scheduler
    flags: _containers.RepeatedScalarFieldContainer[IpvsService.Flag]
    persistence_timeout_s: int
    def __init__(self, tcp_attributes: _Optional[_Union[IpvsTcpAttributes, _Mapping]] = ..., udp_attributes: _Optional[_Union[IpvsUdpAttributes, _Mapping]] = ..., fwmark_attributes: _Optional[_Union[IpvsFwmarkAttributes, _Mapping]] = ..., scheduler: _Optional[_Union[IpvsService.Scheduler, str]] = ..., flags: _Optional[_Iterable[_Union[IpvsService.Flag, str]]] = ..., persistence_timeout_s: _Optional[int] = ...) -> None: ...

class BgpRouteAttributes(_message.Message):
    __slots__ = ("local_asn", "peer_asn", "community", "prefix", "prefixlen", "hold_time_ms")
    LOCAL_ASN_FIELD_NUMBER: _ClassVar[int]
    PEER_ASN_FIELD_NUMBER: _ClassVar[int]
    COMMUNITY_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    PREFIXLEN_FIELD_NUMBER: _ClassVar[int]
    HOLD_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    local_asn: int
    peer_asn: int
    community: str
    prefix: IP
    prefixlen: int
    hold_time_ms: int
    def __init__(self, local_asn: _Optional[int] = ..., peer_asn: _Optional[int] = ..., community: _Optional[str] = ..., prefix: _Optional[_Union[IP, _Mapping]] = ..., prefixlen: _Optional[int] = ..., hold_time_ms: _Optional[int] = ...) -> None: ...

class LinkAddress(_message.Message):
    __slots__ = ("link_name", "address")
    LINK_NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    link_name: str
    address: IP
    def __init__(self, link_name: _Optional[str] = ..., address: _Optional[_Union[IP, _Mapping]] = ...) -> None: ...

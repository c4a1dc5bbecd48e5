from kglb.pb import common_pb2 as _common_pb2
from kglb.pb import healthchecker_pb2 as _healthchecker_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MdbDiscoveryAttributes(_message.Message):
    __slots__ = ("query",)
    QUERY_FIELD_NUMBER: _ClassVar[int]
    query: str
    def __init__(self, query: _Optional[str] = ...) -> None: ...

class StaticDiscoveryAttributes(_message.Message):
    __slots__ = ("hosts",)
    HOSTS_FIELD_NUMBER: _ClassVar[int]
    hosts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, hosts: _Optional[_Iterable[str]] = ...) -> None: ...

class FileDiscoveryAttributes(_message.Message):
    __slots__ = ("path", "refresh_ms")
    PATH_FIELD_NUMBER: _ClassVar[int]
    REFRESH_MS_FIELD_NUMBER: _ClassVar[int]
    path: str
    refresh_ms: int
    def __init__(self, path: _Optional[str] = ..., refresh_ms: _Optional[int] = ...) -> None: ...

class DnsDiscoveryAttributes(_message.Message):
    __slots__ = ("name", "type", "refresh_ms", "nameservers")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REFRESH_MS_FIELD_NUMBER: _ClassVar[int]
    NAMESERVERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    refresh_ms: int
    nameservers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., refresh_ms: _Optional[int] = ..., nameservers: _Optional[_Iterable[str]] = ...) -> None: ...

class EtcdDiscoveryAttributes(_message.Message):
    __slots__ = ("endpoints", "prefix")
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    endpoints: _containers.RepeatedScalarFieldContainer[str]
    prefix: str
    def __init__(self, endpoints: _Optional[_Iterable[str]] = ..., prefix: _Optional[str] = ...) -> None: ...

class UpstreamDiscovery(_message.Message):
    __slots__ = ("port", "resolve_family", "max_remove_ratio", "mdb_attributes", "static_attributes", "file_attributes", "dns_attributes", "etcd_attributes")
    PORT_FIELD_NUMBER: _ClassVar[int]
    RESOLVE_FAMILY_FIELD_NUMBER: _ClassVar[int]
    MAX_REMOVE_RATIO_FIELD_NUMBER: _ClassVar[int]
    MDB_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    STATIC_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    FILE_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    DNS_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    ETCD_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    port: int
    resolve_family: _common_pb2.AddressFamily
    max_remove_ratio: float
    mdb_attributes: MdbDiscoveryAttributes
    static_attributes: StaticDiscoveryAttributes
    file_attributes: FileDiscoveryAttributes
    dns_attributes: DnsDiscoveryAttributes
    etcd_attributes: EtcdDiscoveryAttributes
    def __init__(self, port: _Optional[int] = ..., resolve_family: _Optional[_Union[_common_pb2.AddressFamily, str]] = ..., max_remove_ratio: _Optional[float] = ..., mdb_attributes: _Optional[_Union[MdbDiscoveryAttributes, _Mapping]] = ..., static_attributes: _Optional[_Union[StaticDiscoveryAttributes, _Mapping]] = ..., file_attributes: _Optional[_Union[FileDiscoveryAttributes, _Mapping]] = ..., dns_attributes: _Optional[_Union[DnsDiscoveryAttributes, _Mapping]] = ..., etcd_attributes: _Optional[_Union[EtcdDiscoveryAttributes, _Mapping]] = ...) -> None: ...

class UpstreamRouting(_message.Message):
    __slots__ = ("forward_method",)
    FORWARD_METHOD_FIELD_NUMBER: _ClassVar[int]
    forward_method: _common_pb2.ForwardMethods
    def __init__(self, forward_method: _Optional[_Union[_common_pb2.ForwardMethods, str]] = ...) -> None: ...

class DynamicRouting(_message.Message):
    __slots__ = ("announce_limit_ratio", "bgp_attributes")
    ANNOUNCE_LIMIT_RATIO_FIELD_NUMBER: _ClassVar[int]
    BGP_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    announce_limit_ratio: float
    bgp_attributes: _common_pb2.BgpRouteAttributes
    def __init__(self, announce_limit_ratio: _Optional[float] = ..., bgp_attributes: _Optional[_Union[_common_pb2.BgpRouteAttributes, _Mapping]] = ...) -> None: ...

class BalancerConfig(_message.Message):
    __slots__ = ("name", "setup_name", "lb_service", "upstream_routing", "upstream_discovery", "upstream_checker", "enable_fwmarks", "dynamic_routing", "configure_reals", "weight_up", "vip_link", "drain_timeout_ms", "slow_start_ms", "flap_damping", "min_pooled_ratio")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SETUP_NAME_FIELD_NUMBER: _ClassVar[int]
    LB_SERVICE_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_ROUTING_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_DISCOVERY_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_CHECKER_FIELD_NUMBER: _ClassVar[int]
    ENABLE_FWMARKS_FIELD_NUMBER: _ClassVar[int]
    DYNAMIC_ROUTING_FIELD_NUMBER: _ClassVar[int]
    CONFIGURE_REALS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_UP_FIELD_NUMBER: _ClassVar[int]
    VIP_LINK_FIELD_NUMBER: _ClassVar[int]
    DRAIN_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    SLOW_START_MS_FIELD_NUMBER: _ClassVar[int]
    FLAP_DAMPING_FIELD_NUMBER: _ClassVar[int]
    MIN_POOLED_RATIO_FIELD_NUMBER: _ClassVar[int]
    name: str
    setup_name: str
    lb_service: _common_pb2.LoadBalancerService
    upstream_routing: UpstreamRouting
    upstream_discovery: UpstreamDiscovery
    upstream_checker: _healthchecker_pb2.UpstreamChecker
    enable_fwmarks: bool
    dynamic_routing: DynamicRouting
    configure_reals: bool
    weight_up: int
    vip_link: str
    drain_timeout_ms: int
    slow_start_ms: int
    flap_damping: FlapDamping
    min_pooled_ratio: float
    def __init__(self, name: _Optional[str] = ..., setup_name: _Optional[str] = ..., lb_service: _Optional[_Union[_common_pb2.LoadBalancerService, _Mapping]] = ..., upstream_routing: _Optional[_Union[UpstreamRouting, _Mapping]] = ..., upstream_discovery: _Optional[_Union[UpstreamDiscovery, _Mapping]] = ..., upstream_checker: _Optional[_Union[_healthchecker_pb2.UpstreamChecker, _Mapping]] = ..., enable_fwmarks: _Optional[bool] = ..., dynamic_routing: _Optional[_Union[DynamicRouting, _Mapping]] = ..., configure_reals: _Optional[bool] = ..., weight_up: _Optional[int] = ..., vip_link: _Optional[str] = ..., drain_timeout_ms: _Optional[int] = ..., slow_start_ms: _Optional[int] = ..., flap_damping: _Optional[_Union[FlapDamping, _Mapping]] = ..., min_pooled_ratio: _Optional[float] = ...) -> None: ...

class FlapDamping(_message.Message):
    __slots__ = ("half_life_ms", "suppress_flaps", "reuse_flaps")
    HALF_LIFE_MS_FIELD_NUMBER: _ClassVar[int]
    SUPPRESS_FLAPS_FIELD_NUMBER: _ClassVar[int]
    REUSE_FLAPS_FIELD_NUMBER: _ClassVar[int]
    half_life_ms: int
    suppress_flaps: float
    reuse_flaps: float
    def __init__(self, half_life_ms: _Optional[int] = ..., suppress_flaps: _Optional[float] = ..., reuse_flaps: _Optional[float] = ...) -> None: ...

class ControlPlaneConfig(_message.Message):
    __slots__ = ("balancers",)
    BALANCERS_FIELD_NUMBER: _ClassVar[int]
    balancers: _containers.RepeatedCompositeFieldContainer[BalancerConfig]
    def __init__(self, balancers: _Optional[_Iterable[_Union[BalancerConfig, _Mapping]]] = ...) -> None: ...

from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IPProtocol(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TCP: _ClassVar[IPProtocol]
    UDP: _ClassVar[IPProtocol]
TCP: IPProtocol
UDP: IPProtocol

class DnsCheckerAttributes(_message.Message):
    __slots__ = ("query_string", "query_type", "protocol", "rcode", "check_timeout_ms")
    class DNSQueryType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        A: _ClassVar[DnsCheckerAttributes.DNSQueryType]
        AAAA: _ClassVar[DnsCheckerAttributes.DNSQueryType]
        NS: _ClassVar[DnsCheckerAttributes.DNSQueryType]
        MX: _ClassVar[DnsCheckerAttributes.DNSQueryType]
        TXT: _ClassVar[DnsCheckerAttributes.DNSQueryType]
        SOA: _ClassVar[DnsCheckerAttributes.DNSQueryType]
    A: DnsCheckerAttributes.DNSQueryType
    AAAA: DnsCheckerAttributes.DNSQueryType
    NS: DnsCheckerAttributes.DNSQueryType
    MX: DnsCheckerAttributes.DNSQueryType
    TXT: DnsCheckerAttributes.DNSQueryType
    SOA: DnsCheckerAttributes.DNSQueryType
    QUERY_STRING_FIELD_NUMBER: _ClassVar[int]
    QUERY_TYPE_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    RCODE_FIELD_NUMBER: _ClassVar[int]
    CHECK_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    query_string: str
    query_type: DnsCheckerAttributes.DNSQueryType
    protocol: IPProtocol
    rcode: int
    check_timeout_ms: int
    def __init__(self, query_string: _Optional[str] = ..., query_type: _Optional[_Union[DnsCheckerAttributes.DNSQueryType, str]] = ..., protocol: _Optional[_Union[IPProtocol, str]] = ..., rcode: _Optional[int] = ..., check_timeout_ms: _Optional[int] = ...) -> None: ...

class DummyCheckerAttributes(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HttpCheckerAttributes(_message.Message):
    __slots__ = ("scheme", "uri", "headers", "codes", "proxy_check_url", "follow_redirects", "check_timeout_ms")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    CODES_FIELD_NUMBER: _ClassVar[int]
    PROXY_CHECK_URL_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_REDIRECTS_FIELD_NUMBER: _ClassVar[int]
    CHECK_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    scheme: str
    uri: str
    headers: _containers.ScalarMap[str, str]
    codes: _containers.RepeatedScalarFieldContainer[int]
    proxy_check_url: str
    follow_redirects: bool
    check_timeout_ms: int
    def __init__(self, scheme: _Optional[str] = ..., uri: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ..., codes: _Optional[_Iterable[int]] = ..., proxy_check_url: _Optional[str] = ..., follow_redirects: _Optional[bool] = ..., check_timeout_ms: _Optional[int] = ...) -> None: ...

class SyslogCheckerAttributes(_message.Message):
    __slots__ = ("log_level", "port", "protocol", "check_timeout_ms")
    LOG_LEVEL_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    CHECK_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    log_level: int
    port: int
    protocol: IPProtocol
    check_timeout_ms: int
    def __init__(self, log_level: _Optional[int] = ..., port: _Optional[int] = ..., protocol: _Optional[_Union[IPProtocol, str]] = ..., check_timeout_ms: _Optional[int] = ...) -> None: ...

class TcpCheckerAttributes(_message.Message):
    __slots__ = ("check_timeout_ms",)
    CHECK_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    check_timeout_ms: int
    def __init__(self, check_timeout_ms: _Optional[int] = ...) -> None: ...

class UpstreamChecker(_message.Message):
    __slots__ = ("interval_ms", "rise_count", "fall_count", "checker", "concurrency_limit")
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    RISE_COUNT_FIELD_NUMBER: _ClassVar[int]
    FALL_COUNT_FIELD_NUMBER: _ClassVar[int]
    CHECKER_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    interval_ms: int
    rise_count: int
    fall_count: int
    checker: HealthCheckerAttributes
    concurrency_limit: int
    def __init__(self, interval_ms: _Optional[int] = ..., rise_count: _Optional[int] = ..., fall_count: _Optional[int] = ..., checker: _Optional[_Union[HealthCheckerAttributes, _Mapping]] = ..., concurrency_limit: _Optional[int] = ...) -> None: ...

class HealthCheckerAttributes(_message.Message):
    __slots__ = ("dummy", "dns", "http", "syslog", "tcp")
    DUMMY_FIELD_NUMBER: _ClassVar[int]
    DNS_FIELD_NUMBER: _ClassVar[int]
    HTTP_FIELD_NUMBER: _ClassVar[int]
    SYSLOG_FIELD_NUMBER: _ClassVar[int]
    TCP_FIELD_NUMBER: _ClassVar[int]
    dummy: DummyCheckerAttributes
    dns: DnsCheckerAttributes
    http: HttpCheckerAttributes
    syslog: SyslogCheckerAttributes
    tcp: TcpCheckerAttributes
    def __init__(self, dummy: _Optional[_Union[DummyCheckerAttributes, _Mapping]] = ..., dns: _Optional[_Union[DnsCheckerAttributes, _Mapping]] = ..., http: _Optional[_Union[HttpCheckerAttributes, _Mapping]] = ..., syslog: _Optional[_Union[SyslogCheckerAttributes, _Mapping]] = ..., tcp: _Optional[_Union[TcpCheckerAttributes, _Mapping]] = ...) -> None: ...

from kglb.pb import common_pb2 as _common_pb2
from kglb.pb import config_pb2 as _config_pb2
from kglb.pb import state_pb2 as _state_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ToWriter(_message.Message):
    __slots__ = ("desired", "stop")
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    desired: DesiredState
    stop: StopWriter
    def __init__(self, desired: _Optional[_Union[DesiredState, _Mapping]] = ..., stop: _Optional[_Union[StopWriter, _Mapping]] = ...) -> None: ...

class DesiredState(_message.Message):
    __slots__ = ("sequence", "state", "provisional", "unchanged")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROVISIONAL_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    state: _state_pb2.DataPlaneState
    provisional: _containers.RepeatedCompositeFieldContainer[RealIndex]
    unchanged: _containers.RepeatedCompositeFieldContainer[_common_pb2.IpvsService]
    def __init__(self, sequence: _Optional[int] = ..., state: _Optional[_Union[_state_pb2.DataPlaneState, _Mapping]] = ..., provisional: _Optional[_Iterable[_Union[RealIndex, _Mapping]]] = ..., unchanged: _Optional[_Iterable[_Union[_common_pb2.IpvsService, _Mapping]]] = ...) -> None: ...

class RealIndex(_message.Message):
    __slots__ = ("balancer", "upstream")
    BALANCER_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    balancer: int
    upstream: int
    def __init__(self, balancer: _Optional[int] = ..., upstream: _Optional[int] = ...) -> None: ...

class StopWriter(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FromWriter(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: WriterReport
    def __init__(self, report: _Optional[_Union[WriterReport, _Mapping]] = ...) -> None: ...

class WriterReport(_message.Message):
    __slots__ = ("manager_state", "applied_sequence", "applied_wall", "last_apply_duration", "applies", "operations", "operations_by_kind", "errors", "errors_by_errno", "drift_repairs", "owned_services", "owned_addresses", "foreign_services", "foreign_addresses", "addresses", "routes", "failing", "held", "session_established", "counters", "refused", "stopped", "sync_daemons")
    class OperationsByKindEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class ErrorsByErrnoEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: int
        def __init__(self, key: _Optional[int] = ..., value: _Optional[int] = ...) -> None: ...
    class RefusedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    MANAGER_STATE_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    APPLIED_WALL_FIELD_NUMBER: _ClassVar[int]
    LAST_APPLY_DURATION_FIELD_NUMBER: _ClassVar[int]
    APPLIES_FIELD_NUMBER: _ClassVar[int]
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    OPERATIONS_BY_KIND_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_BY_ERRNO_FIELD_NUMBER: _ClassVar[int]
    DRIFT_REPAIRS_FIELD_NUMBER: _ClassVar[int]
    OWNED_SERVICES_FIELD_NUMBER: _ClassVar[int]
    OWNED_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    FOREIGN_SERVICES_FIELD_NUMBER: _ClassVar[int]
    FOREIGN_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    FAILING_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    SESSION_ESTABLISHED_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    STOPPED_FIELD_NUMBER: _ClassVar[int]
    SYNC_DAEMONS_FIELD_NUMBER: _ClassVar[int]
    manager_state: str
    applied_sequence: int
    applied_wall: float
    last_apply_duration: float
    applies: int
    operations: int
    operations_by_kind: _containers.ScalarMap[str, int]
    errors: int
    errors_by_errno: _containers.ScalarMap[int, int]
    drift_repairs: int
    owned_services: _containers.RepeatedCompositeFieldContainer[_common_pb2.IpvsService]
    owned_addresses: _containers.RepeatedCompositeFieldContainer[_common_pb2.LinkAddress]
    foreign_services: _containers.RepeatedCompositeFieldContainer[_common_pb2.IpvsService]
    foreign_addresses: _containers.RepeatedCompositeFieldContainer[_common_pb2.LinkAddress]
    addresses: _containers.RepeatedCompositeFieldContainer[_common_pb2.LinkAddress]
    routes: _containers.RepeatedCompositeFieldContainer[_common_pb2.DynamicRoute]
    failing: _containers.RepeatedScalarFieldContainer[str]
    held: _containers.RepeatedCompositeFieldContainer[_common_pb2.DynamicRoute]
    session_established: bool
    counters: _containers.RepeatedCompositeFieldContainer[ServiceCounters]
    refused: _containers.ScalarMap[str, int]
    stopped: bool
    sync_daemons: SyncDaemonsReport
    def __init__(self, manager_state: _Optional[str] = ..., applied_sequence: _Optional[int] = ..., applied_wall: _Optional[float] = ..., last_apply_duration: _Optional[float] = ..., applies: _Optional[int] = ..., operations: _Optional[int] = ..., operations_by_kind: _Optional[_Mapping[str, int]] = ..., errors: _Optional[int] = ..., errors_by_errno: _Optional[_Mapping[int, int]] = ..., drift_repairs: _Optional[int] = ..., owned_services: _Optional[_Iterable[_Union[_common_pb2.IpvsService, _Mapping]]] = ..., owned_addresses: _Optional[_Iterable[_Union[_common_pb2.LinkAddress, _Mapping]]] = ..., foreign_services: _Optional[_Iterable[_Union[_common_pb2.IpvsService, _Mapping]]] = ..., foreign_addresses: _Optional[_Iterable[_Union[_common_pb2.LinkAddress, _Mapping]]] = ..., addresses: _Optional[_Iterable[_Union[_common_pb2.LinkAddress, _Mapping]]] = ..., routes: _Optional[_Iterable[_Union[_common_pb2.DynamicRoute, _Mapping]]] = ..., failing: _Optional[_Iterable[str]] = ..., held: _Optional[_Iterable[_Union[_common_pb2.DynamicRoute, _Mapping]]] = ..., session_established: _Optional[bool] = ..., counters: _Optional[_Iterable[_Union[ServiceCounters, _Mapping]]] = ..., refused: _Optional[_Mapping[str, int]] = ..., stopped: _Optional[bool] = ..., sync_daemons: _Optional[_Union[SyncDaemonsReport, _Mapping]] = ...) -> None: ...

class SyncDaemonsReport(_message.Message):
    __slots__ = ("desired", "running", "owned", "conflicts", "errors", "last_error")
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    OWNED_FIELD_NUMBER: _ClassVar[int]
    CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    desired: _containers.RepeatedCompositeFieldContainer[_config_pb2.IpvsSyncDaemon]
    running: _containers.RepeatedCompositeFieldContainer[_config_pb2.IpvsSyncDaemon]
    owned: _containers.RepeatedCompositeFieldContainer[_config_pb2.IpvsSyncDaemon]
    conflicts: _containers.RepeatedCompositeFieldContainer[_config_pb2.IpvsSyncDaemon]
    errors: int
    last_error: str
    def __init__(self, desired: _Optional[_Iterable[_Union[_config_pb2.IpvsSyncDaemon, _Mapping]]] = ..., running: _Optional[_Iterable[_Union[_config_pb2.IpvsSyncDaemon, _Mapping]]] = ..., owned: _Optional[_Iterable[_Union[_config_pb2.IpvsSyncDaemon, _Mapping]]] = ..., conflicts: _Optional[_Iterable[_Union[_config_pb2.IpvsSyncDaemon, _Mapping]]] = ..., errors: _Optional[int] = ..., last_error: _Optional[str] = ...) -> None: ...

class ServiceCounters(_message.Message):
    __slots__ = ("service", "stats", "reals")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    REALS_FIELD_NUMBER: _ClassVar[int]
    service: _common_pb2.IpvsService
    stats: _common_pb2.Stats
    reals: _containers.RepeatedCompositeFieldContainer[RealCounters]
    def __init__(self, service: _Optional[_Union[_common_pb2.IpvsService, _Mapping]] = ..., stats: _Optional[_Union[_common_pb2.Stats, _Mapping]] = ..., reals: _Optional[_Iterable[_Union[RealCounters, _Mapping]]] = ...) -> None: ...

class RealCounters(_message.Message):
    __slots__ = ("address", "port", "stats")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    address: _common_pb2.IP
    port: int
    stats: _common_pb2.Stats
    def __init__(self, address: _Optional[_Union[_common_pb2.IP, _Mapping]] = ..., port: _Optional[int] = ..., stats: _Optional[_Union[_common_pb2.Stats, _Mapping]] = ...) -> None: ...

from kglb.pb import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DataPlaneState(_message.Message):
    __slots__ = ("balancers", "dynamic_routes", "link_addresses")
    BALANCERS_FIELD_NUMBER: _ClassVar[int]
    DYNAMIC_ROUTES_FIELD_NUMBER: _ClassVar[int]
    LINK_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    balancers: _containers.RepeatedCompositeFieldContainer[_common_pb2.BalancerState]
    dynamic_routes: _containers.RepeatedCompositeFieldContainer[_common_pb2.DynamicRoute]
    link_addresses: _containers.RepeatedCompositeFieldContainer[_common_pb2.LinkAddress]
    def __init__(self, balancers: _Optional[_Iterable[_Union[_common_pb2.BalancerState, _Mapping]]] = ..., dynamic_routes: _Optional[_Iterable[_Union[_common_pb2.DynamicRoute, _Mapping]]] = ..., link_addresses: _Optional[_Iterable[_Union[_common_pb2.LinkAddress, _Mapping]]] = ...) -> None: ...

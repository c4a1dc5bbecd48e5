"""Data planes the writer can drive: the Protocol, the in-memory kernel model, IPVS.

``IpvsDataPlane`` is imported lazily (``from actors.dataplane.ipvs import
IpvsDataPlane``) because it pulls in pyroute2, which tests and ``--dry-run``
do not need.
"""

from ._base import DataPlane, OperationError, RealCounters, RouteSpeaker, ServiceCounters
from .memory import MemoryDataPlane

__all__ = [
    "DataPlane",
    "MemoryDataPlane",
    "OperationError",
    "RealCounters",
    "RouteSpeaker",
    "ServiceCounters",
]

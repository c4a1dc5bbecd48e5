"""The writer's decisions, without I/O: ``WriterMachine`` and what it exchanges."""

from ._groups import covers, group_of, held_address, service_group
from ._machine import Goal, Trouble, WriterMachine
from ._messages import (
    Action,
    Applied,
    Apply,
    ArmTimer,
    Desired,
    Event,
    Failure,
    KernelRead,
    ManagerState,
    Phase,
    ReadKernel,
    Record,
    Stop,
    TimerDue,
)

__all__ = [
    "Action",
    "Applied",
    "Apply",
    "ArmTimer",
    "Desired",
    "Event",
    "Failure",
    "Goal",
    "KernelRead",
    "ManagerState",
    "Phase",
    "ReadKernel",
    "Record",
    "Stop",
    "TimerDue",
    "Trouble",
    "WriterMachine",
    "covers",
    "group_of",
    "held_address",
    "service_group",
]

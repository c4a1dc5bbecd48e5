"""Loading and validating kglb configuration files."""

from ._errors import ConfigError
from ._load import load
from ._types import (
    BalancerConfig,
    BgpAttributes,
    Check,
    CheckerConfig,
    Config,
    DnsCheck,
    DummyCheck,
    HttpCheck,
    SyslogCheck,
    TcpCheck,
)

__all__ = [
    "BalancerConfig",
    "BgpAttributes",
    "Check",
    "CheckerConfig",
    "Config",
    "ConfigError",
    "DnsCheck",
    "DummyCheck",
    "HttpCheck",
    "SyslogCheck",
    "TcpCheck",
    "load",
]

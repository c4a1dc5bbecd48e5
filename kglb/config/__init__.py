"""Loading and validating kglb configuration files."""

from ._errors import ConfigError
from ._types import (
    BalancerConfig,
    BgpAttributes,
    Check,
    CheckerConfig,
    Config,
    DnsCheck,
    DnsSource,
    DummyCheck,
    EtcdSource,
    FileSource,
    FlapDamping,
    HttpCheck,
    Lifecycle,
    Source,
    StaticSource,
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
    "DnsSource",
    "DummyCheck",
    "EtcdSource",
    "FileSource",
    "FlapDamping",
    "HttpCheck",
    "Lifecycle",
    "Source",
    "StaticSource",
    "SyslogCheck",
    "TcpCheck",
    "load",
]


def __getattr__(name: str):
    # ``load`` pulls in protobuf (~6 MB of RSS): imported when first used, so a
    # probe worker, which unpickles targets built of these types, does without.
    if name == "load":
        from ._load import load

        globals()["load"] = load  # found directly from now on
        return load
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

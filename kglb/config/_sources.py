"""Validation of kglb-trio's discovery sources: fileAttributes, dnsAttributes, etcdAttributes.

Each returns the source's frozen config, or None after reporting every problem
with its path. staticAttributes stays in ``_validate`` (kglb's rules).
"""

from __future__ import annotations

import ipaddress
import math
import re
from urllib.parse import urlsplit

from .._model import Family
from ..pb import config_pb2
from ._errors import Problems, Where
from ._types import (
    DEFAULT_DNS_REFRESH_MS,
    DEFAULT_FILE_REFRESH_MS,
    DEFAULT_MAX_REMOVE_RATIO,
    DnsSource,
    EtcdSource,
    FileSource,
    Source,
)

_DNS_TYPES = ("A", "AAAA", "SRV")
_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?")


def convert_source(d: config_pb2.UpstreamDiscovery, kind: str, family: Family, where: Where,
                   problems: Problems) -> Source | None:
    """The source of ``d`` whose oneof member is ``kind`` (file, dns or etcd attributes)."""
    here = where.field(kind)
    if kind == "file_attributes":
        return _file(d.file_attributes, here, problems)
    if kind == "dns_attributes":
        return _dns(d.dns_attributes, family, here, problems)
    return _etcd(d.etcd_attributes, here, problems)


def max_remove_ratio(d: config_pb2.UpstreamDiscovery, where: Where, problems: Problems) -> float:
    if not d.HasField("max_remove_ratio"):
        return DEFAULT_MAX_REMOVE_RATIO
    ratio = float(f"{d.max_remove_ratio:.7g}")  # the float32 as written
    if not 0.0 <= ratio <= 1.0:  # also refuses NaN
        problems.error(where.field("max_remove_ratio"), f"must be between 0 and 1, not {ratio}")
    return ratio if math.isfinite(ratio) else DEFAULT_MAX_REMOVE_RATIO


def _file(f: config_pb2.FileDiscoveryAttributes, where: Where,
          problems: Problems) -> FileSource | None:
    if not f.path:
        problems.error(where.field("path"), "is required")
        return None
    return FileSource(path=f.path, refresh_ms=f.refresh_ms or DEFAULT_FILE_REFRESH_MS)


def _dns(d: config_pb2.DnsDiscoveryAttributes, family: Family, where: Where,
         problems: Problems) -> DnsSource | None:
    before = len(problems.errors)
    name = d.name.rstrip(".")
    if not name or not _NAME.fullmatch(name) or ".." in name:
        problems.error(where.field("name"), f"{d.name!r} is not a DNS name")
    rdtype = d.type.upper() or ("AAAA" if family is Family.INET6 else "A")
    if rdtype not in _DNS_TYPES:
        problems.error(where.field("type"), f"{d.type!r} is not one of {', '.join(_DNS_TYPES)}")
    elif rdtype != "SRV" and (rdtype == "AAAA") != (family is Family.INET6):
        problems.error(where.field("type"), f"{rdtype} records do not match resolveFamily "
                                            f"{'AF_INET6' if family is Family.INET6 else 'AF_INET'}")
    servers = []
    for i, text in enumerate(d.nameservers):
        server = _ip_port(text)
        if server is None:
            problems.error(where.field("nameservers").item(i),
                           f"{text!r} is not \"address:port\" (an IP address and a port)")
        else:
            servers.append(server)
    if len(problems.errors) > before:
        return None
    return DnsSource(name=name + ".", type=rdtype, refresh_ms=d.refresh_ms or DEFAULT_DNS_REFRESH_MS,
                     nameservers=tuple(servers))


def _ip_port(text: str) -> tuple[str, int] | None:
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not port.isdigit() or not 0 < int(port) <= 65535:
        return None
    try:
        return str(ipaddress.ip_address(host)), int(port)
    except ValueError:
        return None


def _etcd(e: config_pb2.EtcdDiscoveryAttributes, where: Where,
          problems: Problems) -> EtcdSource | None:
    before = len(problems.errors)
    if not e.endpoints:
        problems.error(where.field("endpoints"), "must not be empty")
    for i, url in enumerate(e.endpoints):
        try:
            parts = urlsplit(url)
            ok = parts.scheme in ("http", "https") and parts.hostname and parts.port is not None
        except ValueError:
            ok = False
        if not ok or parts.path not in ("", "/") or parts.query:
            problems.error(where.field("endpoints").item(i),
                           f"{url!r} is not \"http://host:port\" (etcd's client URL)")
    if not e.prefix:
        problems.error(where.field("prefix"), "is required (every key under it is one real)")
    if len(problems.errors) > before:
        return None
    return EtcdSource(endpoints=tuple(u.rstrip("/") for u in e.endpoints), prefix=e.prefix)

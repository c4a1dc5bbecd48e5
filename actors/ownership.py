"""The ownership record: which IPVS services and VIPs this control plane created or adopted.

A small JSON file (default ``/run/kglb-trio/owned.json``), rewritten
atomically (temporary file in the same directory, fsync, rename), so a crash
never leaves half a record. It is written *ahead*: before an apply creates a
service or a VIP the record already names it, and after the apply it is
rewritten with what exists (``kglb.writer``). A crash at any instant thus
leaves a record naming everything this control plane may have created; what
it names but the kernel lacks is simply dropped at the next apply. It
survives a restart of the process (not of the host: /run is a tmpfs, and
after a reboot the kernel is empty anyway).

A missing or unreadable record means "the record owns nothing". VIPs are
still known: each one we add carries a kernel-side mark (IFA_PROTO, see
``actors.dataplane._ipvs_kernel.VIP_PROTO``), and the writer owns every
marked VIP. IPVS services carry no such mark, so without a record the next
start adopts the desired services it finds and leaves every other service
alone, reported as foreign: a lost record can leave services of a removed
balancer behind, never delete someone else's (decisions.md rows 19, 20).

Format (version 1)::

    {"version": 1,
     "services": [{"family": 2, "protocol": 6, "address": "10.0.0.1", "port": 80},
                  {"family": 2, "fwmark": 7}],
     "addresses": [{"link": "lo", "address": "10.0.0.1"}]}
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import structlog

from kglb import Family, LinkAddress, Owned, Protocol, ServiceKey

__all__ = ["load_owned", "remove_partial_records", "save_owned", "write_json_atomically"]

_VERSION = 1
log = structlog.get_logger("kglb_trio.ownership")


def load_owned(path: str | os.PathLike[str]) -> Owned:
    """The record at ``path``; ``Owned()`` if it is missing or unreadable (logged).

    Only reads (``plan`` uses it too); see ``remove_partial_records``.
    """
    try:
        text = Path(path).read_bytes()
    except FileNotFoundError:
        log.info("no ownership record, owning nothing", path=str(path))
        return Owned()
    except OSError as e:
        log.warning("cannot read ownership record, owning nothing", path=str(path), error=str(e))
        return Owned()
    try:
        data = json.loads(text)
        if data.get("version") != _VERSION:
            raise ValueError(f"unknown version {data.get('version')!r}")
        services = frozenset(_service_key(s) for s in data["services"])
        addresses = frozenset(
            LinkAddress(link=a["link"], address=a["address"]) for a in data["addresses"]
        )
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        log.warning("corrupt ownership record, owning nothing", path=str(path), error=repr(e))
        return Owned()
    return Owned(services=services, addresses=addresses)


def remove_partial_records(path: str | os.PathLike[str]) -> None:
    """Remove the temporary files a crash in the middle of ``save_owned`` left beside ``path``."""
    target = Path(path)
    try:
        for stale in target.parent.glob(f".{target.name}.*"):
            stale.unlink(missing_ok=True)
    except OSError as e:
        log.warning("cannot remove partial ownership records", path=str(path), error=str(e))


def save_owned(path: str | os.PathLike[str], owned: Owned) -> None:
    """Replace the record at ``path`` atomically; creates the directory. Raises OSError."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "version": _VERSION,
        "services": [_service_dict(k) for k in sorted(owned.services)],
        "addresses": [{"link": a.link, "address": a.address} for a in sorted(owned.addresses)],
    }
    write_json_atomically(target, data)


def write_json_atomically(target: Path, data: object) -> None:
    """Replace ``target`` with ``data`` as JSON: temporary file beside it, fsync, rename.

    A crash at any instant leaves either the old file or the new one (a
    leftover ``.name.*`` temporary is what ``remove_partial_records`` cleans).
    Raises OSError.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise


def _service_dict(key: ServiceKey) -> dict[str, int | str]:
    if key.fwmark:
        return {"family": int(key.family), "fwmark": key.fwmark}
    return {"family": int(key.family), "protocol": int(key.protocol), "address": key.address,
            "port": key.port}


def _service_key(d: dict) -> ServiceKey:
    family = Family(d["family"])
    if "fwmark" in d:
        return ServiceKey.for_fwmark(int(d["fwmark"]), family)
    return ServiceKey(family=family, protocol=Protocol(d["protocol"]), address=d["address"],
                      port=int(d["port"]))

"""The ownership record: round trip, atomic replacement, corrupt or missing = owns nothing."""

from __future__ import annotations

import os

import pytest

from actors.ownership import load_owned, save_owned
from kglb import Family, LinkAddress, Owned, ServiceKey

OWNED = Owned(
    services=frozenset({ServiceKey.tcp("10.0.0.1", 80), ServiceKey.udp("fd00::1", 53),
                        ServiceKey.for_fwmark(7, Family.INET6)}),
    addresses=frozenset({LinkAddress(address="10.0.0.1"),
                         LinkAddress(link="dummy0", address="fd00::1")}),
)


def test_round_trip_creates_the_directory(tmp_path):
    path = tmp_path / "run" / "kglb-trio" / "owned.json"
    save_owned(path, OWNED)
    assert load_owned(path) == OWNED
    save_owned(path, Owned())
    assert load_owned(path) == Owned()
    assert os.listdir(path.parent) == ["owned.json"]  # no temporary file left


def test_missing_means_nothing(tmp_path):
    assert load_owned(tmp_path / "absent.json") == Owned()


@pytest.mark.parametrize("text", [
    b"", b"{", b"[]", b'{"version": 2, "services": [], "addresses": []}',
    b'{"version": 1, "services": [{"family": 2}], "addresses": []}',
    b'{"version": 1, "services": [], "addresses": [{"link": "lo", "address": "nope"}]}',
])
def test_corrupt_means_nothing(tmp_path, text):
    path = tmp_path / "owned.json"
    path.write_bytes(text)
    assert load_owned(path) == Owned()


def test_failed_write_keeps_the_old_record(tmp_path, monkeypatch):
    path = tmp_path / "owned.json"
    save_owned(path, OWNED)

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        save_owned(path, Owned())
    assert load_owned(path) == OWNED
    assert os.listdir(tmp_path) == ["owned.json"]

"""The /status JSON from a fake snapshot, and `kglb-trio status` rendering it."""

from __future__ import annotations

import json
import types
from dataclasses import replace

import orjson
import pytest
import trio

from _ops_fakes import NOW, WALL, kglb_statistics, snapshot
from actors import _cmd_status
from actors._cmd_status import render_table
from actors.status import status_document, status_json
from kglb import ServiceFlag


def test_every_balancer_and_real_with_health_reason_and_since():
    doc = status_document(snapshot(), now=NOW, wall=WALL)
    web, dns = doc["balancers"]
    assert (web["name"], web["setup"], web["service"], web["key"]) == (
        "web", "prod", "TCP 10.0.0.1:80", "10.0.0.1:80-tcp")
    assert (web["scheduler"], web["forward"], web["state"], web["alive_ratio"]) == (
        "wrr", "tunnel", "available", 0.5)
    assert web["route"] == {"prefix": "10.0.0.1/32", "announced": True}
    assert web["reals"][0] == {
        "host": "web1", "address": "10.1.0.1", "port": 80, "weight": 1000, "health": "up",
        "count": 5, "passed": True, "reason": "ok", "latency_ms": 4.0,
        "since": "2023-11-14T22:13:10.000+00:00", "since_seconds": 10.0, "fwmark": 0,
        "state": "up", "connections": None, "drain_left_seconds": None, "flap_penalty": 0.0}
    down = web["reals"][1]
    assert (down["health"], down["weight"], down["reason"], down["since_seconds"]) == (
        "down", 0, "status 503", 30.0)
    assert dns["state"] == "no_upstreams" and dns["route"] is None
    assert dns["reals"][0]["address"] is None and dns["reals"][0]["reason"] is None


def test_persistence_timeout_is_shown_for_persistent_services():
    """An operator reads the persistence timeout off /status (it was not there)."""
    stats = snapshot()
    web = stats.balancers[0]
    main = web.services[0]
    sticky = replace(main, service=replace(main.service, flags=ServiceFlag.PERSISTENT,
                                           timeout=300))
    stats = replace(stats, balancers=(replace(web, services=(sticky,)), *stats.balancers[1:]),
                    writer=replace(stats.writer, applied=replace(
                        stats.writer.applied, services=(sticky, *stats.desired.services[1:]))))
    doc = status_document(stats, now=NOW, wall=WALL)
    web_doc, dns_doc = doc["balancers"]
    assert (web_doc["flags"], web_doc["persistence_seconds"]) == (["persistent"], 300)
    assert dns_doc["persistence_seconds"] is None
    assert [s["persistence_seconds"] for s in doc["applied"]["services"]] == [300, None]


def test_applied_state_owned_and_foreign():
    doc = status_document(snapshot(), now=NOW, wall=WALL)
    applied = doc["applied"]
    assert applied["at"] == "2023-11-14T22:13:16.000+00:00" and applied["age_seconds"] == 4.0
    assert [s["key"] for s in applied["services"]] == ["10.0.0.1:80-tcp", "10.0.0.2:53-udp"]
    assert applied["services"][0]["reals"][1] == {
        "address": "10.1.0.2", "port": 80, "weight": 0, "forward": "tunnel", "hostname": "web2"}
    assert applied["addresses"] == ["lo/10.0.0.1", "lo/10.0.0.2"]
    assert doc["in_sync"] is True and doc["initialized"] is True
    assert doc["owned"] == {"services": ["10.0.0.1:80-tcp", "10.0.0.2:53-udp"],
                            "addresses": ["lo/10.0.0.1", "lo/10.0.0.2"]}
    assert doc["foreign"] == {"services": ["10.9.9.9:443-tcp"], "addresses": []}
    assert doc["writer"]["errors"] == {"17": 2}
    assert doc["reloads"] == {"ok": 2, "failed": 1}
    assert doc["restarts"] == {"balancer web": 3}


def test_before_anything_was_applied():
    doc = status_document(kglb_statistics(), now=NOW, wall=WALL)
    assert doc["applied"] is None and doc["in_sync"] is False and doc["balancers"] == []
    assert "nothing applied yet" in render_table(doc)


def test_out_of_sync_when_applied_differs():
    stats = snapshot()
    stats = replace(stats, writer=replace(stats.writer, applied=replace(stats.desired,
                                                                        routes=())))
    assert status_document(stats, now=NOW, wall=WALL)["in_sync"] is False


def test_json_round_trips():
    assert orjson.loads(status_json(snapshot(), now=NOW, wall=WALL)) == json.loads(
        json.dumps(status_document(snapshot(), now=NOW, wall=WALL)))


CANNED = {
    "version": 1, "generated_at": "2026-11-28T09:00:00.000+00:00", "initialized": True,
    "balancers": [{
        "name": "web", "setup": "prod", "identity": "web-10.0.0.1:80-tcp",
        "service": "TCP 10.0.0.1:80", "key": "10.0.0.1:80-tcp", "scheduler": "wrr",
        "flags": ["persistent"], "forward": "masq", "state": "available", "alive_ratio": 0.5,
        "initial": False, "failsafe": False, "route": {"prefix": "10.0.0.1/32", "announced": False},
        "vip": "10.0.0.1",
        "reals": [
            {"host": "10.1.0.1", "address": "10.1.0.1", "port": 8080, "weight": 1000,
             "health": "up", "count": 3, "passed": True, "reason": "ok", "latency_ms": 1.25,
             "since": "x", "since_seconds": 3725.0, "fwmark": 0},
            {"host": "b.example.", "address": "2001:db8::2", "port": 8080, "weight": 0,
             "health": "down", "count": -2, "passed": False, "reason": "refused",
             "latency_ms": 0.5, "since": "x", "since_seconds": 42.0, "fwmark": 0},
        ]}],
    "applied": {"at": "x", "age_seconds": 2.0, "services": [], "addresses": [], "routes": []},
    "in_sync": False,
    "writer": {"manager_state": "set_state_failed", "operations": 3, "errors": {"17": 1},
               "drift_repairs": 0, "last_apply_ms": 1.0, "bgp_session": True, "announced": []},
    "owned": {"services": [], "addresses": []},
    "foreign": {"services": ["10.9.9.9:443-tcp"], "addresses": ["lo/10.9.9.9"]},
    "reloads": {"ok": 1, "failed": 0}, "restarts": {},
}


def test_table_from_canned_json():
    lines = render_table(CANNED).splitlines()
    assert lines[0] == ("kglb-trio 2026-11-28T09:00:00.000+00:00  data plane set_state_failed "
                        "(applied 2s ago, catching up)  reloads 1 ok 0 failed")
    assert lines[1].startswith("Prot LocalAddress:Port Scheduler Flags")
    assert lines[2].split() == ["->", "RemoteAddress:Port", "Forward", "Weight", "Health",
                                "Since", "Last", "check"]
    assert lines[3].split() == ["TCP", "10.0.0.1:80", "wrr", "persistent", "web", "(prod)",
                                "available", "alive", "50%", "route", "10.0.0.1/32", "off"]
    assert lines[4].split() == ["->", "10.1.0.1:8080", "Masq", "1000", "up", "62m", "ok",
                                "1.2ms"]
    assert lines[5].split() == ["->", "[2001:db8::2]:8080", "b.example.", "Masq", "0", "down",
                                "42s", "refused", "0.5ms"]
    assert lines[6] == "errors by errno: 17: 1"
    assert lines[7] == "foreign (not ours, left alone): 10.9.9.9:443-tcp lo/10.9.9.9"
    # columns line up like ipvsadm's
    assert lines[4].index("Masq") == lines[2].index("Forward")


class _Response:
    def __init__(self, payload):
        self.text = json.dumps(payload)
        self._payload = payload

    def raise_for_status(self):
        pass

    def json(self):
        return self._payload


@pytest.mark.parametrize("as_json", [False, True])
def test_main_fetches_and_prints(monkeypatch, capsys, as_json):
    seen = []
    monkeypatch.setattr(_cmd_status.httpx, "get",
                        lambda url, timeout: seen.append(url) or _Response(CANNED))
    args = types.SimpleNamespace(status_address="[::1]:5678", json=as_json)
    assert _cmd_status.main(args) == 0
    assert seen == ["http://[::1]:5678/status"]
    out = capsys.readouterr().out
    assert (json.loads(out) == CANNED) if as_json else out == render_table(CANNED)


def test_main_reports_an_unreachable_instance(capsys):
    # port 1 on loopback: nothing listens there, the connection is refused
    args = types.SimpleNamespace(status_address="127.0.0.1:1", json=False)
    assert _cmd_status.main(args) == 1
    assert "cannot read http://127.0.0.1:1/status" in capsys.readouterr().err


async def test_status_command_against_a_running_server(nursery, capsys):
    from actors.http import run_http_server

    class Handle:
        def statistics(self):
            return snapshot()

    host, port = await nursery.start(lambda task_status: run_http_server(
        "127.0.0.1:0", Handle(), task_status=task_status))
    args = types.SimpleNamespace(status_address=f"{host}:{port}", json=False)
    assert await trio.to_thread.run_sync(_cmd_status.main, args) == 0
    out = capsys.readouterr().out
    assert "TCP  10.0.0.1:80 wrr" in out and "status 503" in out
    assert "foreign (not ours, left alone): 10.9.9.9:443-tcp" in out

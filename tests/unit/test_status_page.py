"""The status page's model and HTML: what it lists, in what order, bounded, escaped, served."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
from html.parser import HTMLParser

import httpx
import orjson

from _ops_fakes import NOW, WALL, kglb_statistics, snapshot
from actors.discovery import SourceStatus
from actors.http import run_http_server
from actors.status_page import LIMIT, _discovery, age, page_model, parse_query
from actors.status_page_html import CSP, SCRIPT, render_page
from kglb import BalancerState, CheckResult, Health, RealStatus, Service, ServiceKey, ServiceState

MARKUP = '<img src=x onerror="alert(1)">'


def markup_snapshot():
    """The fake snapshot with markup in a balancer name, a host and a reason."""
    stats = snapshot()
    web, dns = stats.balancers
    up, down = web.reals
    web = dataclasses.replace(
        web, name=f"<b>web</b>{MARKUP}",
        reals=(dataclasses.replace(up, host="<i>web1</i>"),
               dataclasses.replace(down, last=CheckResult(passed=False,
                                                          reason=f"status {MARKUP}"))))
    return dataclasses.replace(stats, balancers=(web, dns))


class _Text(HTMLParser):
    """Every text node and every element a browser would build from the HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def parse(html: str) -> _Text:
    p = _Text()
    p.feed(html)
    return p


def test_page_lists_balancers_reals_writer_and_changes():
    m = page_model(snapshot(), now=NOW, wall=WALL)
    assert m["summary"] == "2 balancers, 3 reals: 1 up, 2 down"
    web, dns = m["balancers"]
    assert (web["name"], web["state"], web["count"]) == ("web", "available", "1 of 2 reals up")
    assert dict(web["head"]) == {"service": "TCP 10.0.0.1:80", "VIP": "10.0.0.1",
                                 "state": "available", "alive": "50%",
                                 "route": "10.0.0.1/32 announced", "discovery": "static",
                                 "setup": "prod", "forward": "tunnel"}
    # down first; then the most recent change
    assert [r["cells"] for r in web["rows"]] == [
        ["web2", "10.1.0.2:80", "down", "0", "fail", "status 503", "200.0 ms", "30s"],
        ["web1", "10.1.0.1:80", "up", "1000", "pass", "ok", "4.00 ms", "10s"]]
    assert [r["cls"] for r in web["rows"]] == ["down", "up"]
    assert dns["rows"][0]["cells"][1:5] == ["unresolved", "down", "0", "not yet"]
    # newest change first, with the real's transition count
    assert [c["cells"] for c in m["changes"]] == [["10s ago", "web", "web1", "up", "1"],
                                                  ["30s ago", "web", "web2", "down", "0"]]
    writer = dict(m["writer"])
    assert writer["state"] == "available" and writer["in sync"] == "yes"
    assert writer["last apply"] == "4s ago, took 12.0 ms"
    assert (writer["drift repairs"], writer["errors"]) == ("1", "2")
    assert writer["BGP session"] == "established"
    # No balancer has a route: the speaker's session says nothing.
    assert dict(page_model(big_stats(1, 1, 2), now=NOW, wall=WALL)["writer"])["BGP session"] \
        == "no routes"


def big_stats(balancers: int, per: int, down_every: int):
    out = []
    for b in range(balancers):
        key = ServiceKey.tcp(f"10.0.{b}.1", 80)
        reals = tuple(
            RealStatus(host=f"b{b}-r{i}", address=f"10.1.{b}.{i % 250}", port=80,
                       health=Health(up=i % down_every != 0, count=1), weight=1000,
                       last=CheckResult(passed=True, latency=0.001),
                       since=NOW - 1000 + i)  # higher i: changed more recently
            for i in range(per))
        out.append(BalancerState(
            identity=f"b{b}", name=f"bal{b}", setup_name="s",
            services=(ServiceState(service=Service(key=key), reals=(), name=f"bal{b}"),),
            reals=reals))
    return kglb_statistics(balancers=tuple(out))


def test_ten_thousand_reals_give_a_bounded_page_down_and_recent_first():
    stats = big_stats(100, 100, down_every=50)  # 10k reals, 200 down
    m = page_model(stats, now=NOW, wall=WALL, limit=300)
    assert len(m["balancers"]) == 100  # every balancer keeps its summary line
    rows = [r for b in m["balancers"] for r in b["rows"]]
    assert len(rows) == 300
    assert sum(r["cls"] == "down" for r in rows) == 200  # every down real is listed
    # the 100 up ones listed are the most recently changed: i = 99 of each balancer
    assert {r["cells"][0].split("-")[1] for r in rows if r["cls"] == "up"} == {"r99"}
    assert m["balancers"][0]["note"] == "97 more reals not listed (all up)"
    assert "at most 300" in m["listed"]
    assert len(orjson.dumps(page_model(stats, now=NOW, wall=WALL))) < 100_000
    assert len(render_page(page_model(stats, now=NOW, wall=WALL))) < 200_000
    assert sum(len(b["rows"]) for b in page_model(stats, now=NOW, wall=WALL)["balancers"]) == LIMIT
    # More down reals than fit: the down ones missing are counted.
    m = page_model(stats, now=NOW, wall=WALL, limit=150)
    notes = [b["note"] for b in m["balancers"]]
    assert notes.count("98 more reals not listed (all up)") == 50
    assert notes.count("99 more reals not listed (1 of them down)") == 50


def test_filter_by_balancer_or_real():
    stats = big_stats(3, 20, down_every=7)
    m = page_model(stats, now=NOW, wall=WALL, query="BAL1")
    assert [b["name"] for b in m["balancers"]] == ["bal1"] and len(m["balancers"][0]["rows"]) == 20
    m = page_model(stats, now=NOW, wall=WALL, query="b2-r1")
    assert [r["cells"][0] for b in m["balancers"] for r in b["rows"]] == [
        "b2-r14", "b2-r19", "b2-r18", "b2-r17", "b2-r16", "b2-r15", "b2-r13", "b2-r12",
        "b2-r11", "b2-r10", "b2-r1"]
    m = page_model(stats, now=NOW, wall=WALL, query="nothing like it")
    assert m["balancers"] == [] and "no balancer matches" in render_page(m)
    assert parse_query("q=a%3Cb&x=1") == "a<b" and parse_query("") == ""
    assert len(parse_query("q=" + "x" * 1000)) == 200


def test_markup_in_names_hosts_and_reasons_is_text():
    p = parse(render_page(page_model(markup_snapshot(), now=NOW, wall=WALL)))
    text = "".join(p.text)
    assert f"<b>web</b>{MARKUP}" in text and "<i>web1</i>" in text and f"status {MARKUP}" in text
    assert p.tags.count("script") == 1 and "img" not in p.tags and "i" not in p.tags
    # the filter's value is an attribute: quoted and escaped
    html = render_page(page_model(markup_snapshot(), now=NOW, wall=WALL, query='"><script>'))
    assert parse(html).tags.count("script") == 1
    assert 'value="&quot;&gt;&lt;script&gt;"' in html
    assert "innerHTML" not in SCRIPT and "insertAdjacentHTML" not in SCRIPT
    assert "document.write" not in SCRIPT


def test_page_is_self_contained():
    html = render_page(page_model(snapshot(), now=NOW, wall=WALL))
    assert not re.search(r"""(src|href)\s*=|@import|url\(""", html)
    assert '<meta http-equiv="refresh" content="10">' in html  # inside <noscript>
    # Only our own script may run: its hash is pinned in the policy.
    [script] = re.findall(r"<script>(.*?)</script>", html, re.S)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in CSP and f'content="{CSP}"' in html


def test_lifecycle_state_and_ipv6_addresses():
    stats = snapshot()
    web, dns = stats.balancers
    up, down = web.reals
    web = dataclasses.replace(web, reals=(
        dataclasses.replace(up, state="draining", connections=7, drain_left=75.0),
        dataclasses.replace(down, address="2001:db8::2", state="ramping")))
    rows = page_model(dataclasses.replace(stats, balancers=(web, dns)),
                      now=NOW, wall=WALL)["balancers"][0]["rows"]
    assert [(r["cls"], r["cells"][1], r["cells"][2], r["cells"][5]) for r in rows] == [
        ("lifecycle", "[2001:db8::2]:80", "ramping", "status 503"),
        ("lifecycle", "10.1.0.1:80", "draining", "7 connections left, 1m15s left")]


def test_discovery_source_of_each_balancer():
    stats = snapshot()
    web, dns = stats.balancers
    source = SourceStatus(kind="etcd", detail="/lb/web", up=False, last_success_age=30.0,
                          endpoints=2, failures=4, error="connection refused", held=1)
    stats = dataclasses.replace(stats, discovery={web.identity: source})
    web_head, dns_head = (dict(b["head"]) for b in
                          page_model(stats, now=NOW, wall=WALL)["balancers"])
    assert web_head["discovery"] == ("etcd /lb/web (failing: connection refused; keeping the "
                                     "last reals), 1 reals held")
    assert dns_head["discovery"] == "static"


def test_discovery_source_as_status_reports_it():
    assert _discovery(None) == "static"
    assert _discovery({"kind": "dns", "detail": "web.example. A", "up": True}) \
        == "dns web.example. A"
    assert _discovery({"kind": "etcd", "detail": "/lb/web", "up": False, "error": "<b>refused",
                       "held": 3}) == ("etcd /lb/web (failing: <b>refused; keeping the last "
                                       "reals), 3 reals held")


def test_age():
    assert [age(s) for s in (None, -1, 0, 59.9, 60, 3599, 3600, 90061)] == [
        "-", "0s", "0s", "59s", "1m00s", "59m59s", "1h00m", "1d01h"]


class Handle:
    def __init__(self, stats):
        self.stats = stats
        self.calls = 0

    def statistics(self):
        self.calls += 1
        return self.stats


async def test_served_and_shared_between_pages(nursery):
    handle = Handle(markup_snapshot())
    _, port = await nursery.start(lambda task_status: run_http_server(
        "127.0.0.1:0", handle, task_status=task_status))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        r = await client.get("/")
        assert (r.status_code, r.headers["content-type"]) == (200, "text/html; charset=utf-8")
        assert "&lt;b&gt;web&lt;/b&gt;" in r.text
        for _ in range(3):  # pages polling at once share one render
            r = await client.get("/page.json")
            assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert r.json()["balancers"][0]["name"] == f"<b>web</b>{MARKUP}"
        assert handle.calls == 2
        for _ in range(2):  # a filter is rendered per request, and not kept
            r = await client.get("/page.json?q=DNS")
            assert [b["name"] for b in r.json()["balancers"]] == ["dns"]
        assert handle.calls == 4
        r = await client.head("/")
        assert r.status_code == 200 and r.content == b""
        r = await client.post("/", content=b"x")
        assert r.status_code == 405  # read-only


async def test_no_statistics_yet_is_a_503(nursery):
    class Starting:
        def statistics(self):
            raise RuntimeError("starting")

    _, port = await nursery.start(lambda task_status: run_http_server(
        "127.0.0.1:0", Starting(), task_status=task_status))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        for path in ("/", "/page.json", "/?q=x"):
            r = await client.get(path)
            assert r.status_code == 503 and "starting" in r.text

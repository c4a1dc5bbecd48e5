"""The status page in a real browser: ``kglb-trio --dry-run`` on loopback reals, headless Chromium.

The config's balancer and setup names carry markup; the reals are TCP
listeners on 127.0.0.x that this test closes to take one down. Chromium loads
the page three ways: as loaded (``--dump-dom``) and with JavaScript off (the
server's snapshot), kept open over the DevTools pipe (it must show the real down
within a few seconds without reloading), and ``--screenshot`` (kept in
``test-artifacts/``, or ``$KGLB_TEST_ARTIFACTS``; docs/status-page.png is a
copy). Needs Debian's chromium (tools/debian-deps.sh); outside CI a missing
browser skips with the reason.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

import _chromium

ROOT = Path(__file__).resolve().parents[2]
WEB = '<b>web</b><img src=x onerror="alert(1)">'
API = "<script>alert('api')</script>"
SETUP = "s&<i>x</i>"


def _require_chromium() -> None:
    if _chromium.binary() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (tools/debian-deps.sh installs it)")
        pytest.skip("chromium is not installed")


class Real:
    """A TCP real on ``address:port`` that accepts and closes; ``down()`` closes the listener."""

    def __init__(self, address: str, port: int) -> None:
        self.sock = socket.create_server((address, port))
        self.sock.settimeout(0.2)
        self.open = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while self.open:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.close()

    def down(self) -> None:
        self.open = False
        self.thread.join()
        self.sock.close()  # connections are refused from now on


def balancer(name: str, vip: str, hosts: list[str], port: int) -> dict:
    return {
        "name": name, "setupName": SETUP,
        "lbService": {"ipvsService": {"tcpAttributes": {"address": {"ipv4": vip}, "port": 80}}},
        "upstreamRouting": {"forwardMethod": "MASQ"},
        "upstreamDiscovery": {"port": port, "staticAttributes": {"hosts": hosts}},
        "upstreamChecker": {"riseCount": 1, "fallCount": 1, "intervalMs": 200,
                            "checker": {"tcp": {"checkTimeoutMs": 500}}},
        "dynamicRouting": {},
    }


def start_kglb_trio(config: Path) -> tuple[subprocess.Popen, str]:
    """``kglb-trio --dry-run`` with its status server on a free port; (process, base URL)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "actors.cli", "--config", str(config), "--dry-run",
         "--status-address", "127.0.0.1:0", "--log-format", "json"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr] + [lines.put("")],
                     daemon=True).start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        if not line:
            break
        if "stats server listening" in line:
            return proc, f"http://{json.loads(line)['address']}"
    proc.kill()
    raise AssertionError("kglb-trio did not start its status server")


def page_json(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/page.json", timeout=10) as r:
        return json.load(r)


def wait_all_up(url: str, reals: int, timeout: float = 30) -> None:
    deadline, rows = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        try:
            rows = [r for b in page_json(url)["balancers"] for r in b["rows"]]
        except urllib.error.HTTPError as exc:
            assert exc.code == 503  # still starting
            time.sleep(0.2)
            continue
        if sum(r["cls"] == "up" for r in rows) == reals:
            return
        time.sleep(0.2)
    raise AssertionError(f"not every real came up: {rows}")


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.rows: list[list[str]] = []
        self.text = ""

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "tr":
            self.rows.append([])

    def handle_data(self, data):
        self.text += data
        if self.tags and self.tags[-1] == "td" and self.rows:
            self.rows[-1].append(data)


def artifacts() -> Path:
    path = Path(os.environ.get("KGLB_TEST_ARTIFACTS", ROOT / "test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def running(tmp_path):
    """kglb-trio on three loopback reals: web (127.0.0.2, .3) and api (127.0.0.4)."""
    _require_chromium()
    first = Real("127.0.0.2", 0)
    port = first.sock.getsockname()[1]
    reals = {"127.0.0.2": first, **{a: Real(a, port) for a in ("127.0.0.3", "127.0.0.4")}}
    config = tmp_path / "kglb.json"
    config.write_text(json.dumps({"balancers": [
        balancer(WEB, "10.0.0.1", ["127.0.0.2", "127.0.0.3"], port),
        balancer(API, "10.0.0.2", ["127.0.0.4"], port)]}))
    proc, url = start_kglb_trio(config)
    try:
        wait_all_up(url, 3)
        yield url, reals
    finally:
        proc.kill()
        proc.wait()
        for real in reals.values():
            if real.open:
                real.down()


def test_page_in_chromium_shows_markup_as_text_and_a_real_going_down_live(running):
    url, reals = running
    port = reals["127.0.0.3"].sock.getsockname()[1]
    # As loaded (--dump-dom), and with JavaScript off: the server's snapshot is complete.
    with _chromium.DevTools(scripts=False) as page:
        page.open(f"{url}/")
        without_scripts = page.dom()
    for html in (_chromium.dump_dom(f"{url}/"), without_scripts):
        dom = _Text()
        dom.feed(html)
        assert WEB in dom.text and API in dom.text and SETUP in dom.text
        assert "img" not in dom.tags and dom.tags.count("script") == 1 and "i" not in dom.tags
        rows = {row[0]: row for row in dom.rows if row and row[0].startswith("127.0.0.")}
        assert sorted(rows) == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        assert all(row[2] == "up" and row[4] == "pass" for row in rows.values())

    with _chromium.DevTools() as page:
        page.open(f"{url}/")
        names = page.evaluate("[...document.querySelectorAll('.balancer .name')]"
                              ".map(e => e.textContent)")
        assert names == [WEB, API]
        assert page.evaluate("document.querySelectorAll('img').length") == 0
        # The Content-Security-Policy is in force: an inline script someone slipped in
        # would not run.
        assert page.evaluate("(() => { const s = document.createElement('script');"
                             " s.textContent = 'window.injected = 1'; document.body.append(s);"
                             " return window.injected; })()") is None
        page.evaluate("window.sameDocument = true")  # gone if the page reloads
        reals["127.0.0.3"].down()
        began = time.monotonic()
        page.wait_for("[...document.querySelectorAll('tr.down td:first-child')]"
                      ".some(td => td.textContent === '127.0.0.3')", timeout=10)
        took = time.monotonic() - began
        assert page.evaluate("window.sameDocument") is True
        assert int(page.evaluate("document.body.dataset.updates")) >= 1
        row = page.evaluate("[...document.querySelectorAll('table.reals tr.down td')]"
                            ".map(td => td.textContent)")
        assert row[:3] == ["127.0.0.3", f"127.0.0.3:{port}", "down"] and row[5] == "refused"
        newest = page.evaluate("[...document.querySelector('table.changes tbody tr').cells]"
                               ".map(td => td.textContent)")
        assert newest[1:4] == [WEB, "127.0.0.3", "down"]
        # The script's layout equals the server's, markup still text after updates.
        assert page.evaluate("document.querySelectorAll('img').length") == 0
        assert page.evaluate("[...document.querySelectorAll('.balancer .name')]"
                             ".map(e => e.textContent)") == [WEB, API]
        page.screenshot(str(artifacts() / "status-page-live.png"))
    print(f"page showed the real down {took:.1f} s after it stopped answering")
    assert took < 8

    shot = artifacts() / "status-page.png"
    shot.unlink(missing_ok=True)
    _chromium.screenshot(f"{url}/", str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

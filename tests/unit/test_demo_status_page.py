"""The demo serves the status page and prints its address, even when its port is taken."""

from __future__ import annotations

import io
import re
import socket

import httpx
import trio

from actors.demo import Timing, run_demo

FAST = Timing(interval_ms=100, rise=1, fall=1, timeout_ms=200, flap_period=0.5,
              recover_after=0.6)


async def test_demo_prints_the_page_address_and_serves_it_when_the_port_is_taken():
    taken = socket.create_server(("127.0.0.1", 0))
    address = "127.0.0.1:%d" % taken.getsockname()[1]
    out = io.StringIO()
    pages = []

    async def open_page() -> None:
        while not (found := re.search(r"status page: (http://\S+)", out.getvalue())):
            await trio.sleep(0.05)
        async with httpx.AsyncClient() as client:
            pages.append(await client.get(found.group(1)))

    with taken, trio.fail_after(60):  # bounded even if the address never shows
        async with trio.open_nursery() as nursery:
            nursery.start_soon(open_page)
            await run_demo(duration=1.5, refresh=0.25, timing=FAST, out=out,
                           status_address=address)
    text = out.getvalue()
    assert f"demo: status address {address} unavailable" in text
    url = re.search(r"status page: (http://127\.0\.0\.1:\d+/)", text).group(1)
    assert url != f"http://{address}/"
    [page] = pages
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "30 reals" in page.text and "192.0.2.1" in page.text

"""Issue 13, problem 3: a scrape body is rendered once per period and shared;
and the scraper gets OpenMetrics when it asks for it (problem 6)."""

from __future__ import annotations

import httpx
import trio
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om

from _ops_fakes import snapshot
from actors.http import run_http_server
from actors.scrape_cache import Page, SharedRender


class Handle:
    def __init__(self):
        self.calls = 0

    def statistics(self):
        self.calls += 1
        return snapshot()


async def get(port: int, path: str, **headers) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.get(f"http://127.0.0.1:{port}{path}", headers=headers)


async def test_concurrent_scrapes_share_one_render(nursery):
    handle = Handle()
    _, port = await nursery.start(lambda task_status: run_http_server(
        "127.0.0.1:0", handle, cache_seconds=60.0, task_status=task_status))
    bodies = []

    async def scrape():
        bodies.append((await get(port, "/metrics")).content)

    async with trio.open_nursery() as scrapers:
        for _ in range(10):
            scrapers.start_soon(scrape)
    await scrape()
    assert handle.calls == 1 and len(set(bodies)) == 1 and len(bodies) == 11


async def test_a_page_is_rendered_again_after_its_period(autojump_clock):
    pages = SharedRender(max_age=5.0)

    async def render() -> Page:
        return Page(code=200, content_type="text/plain", body=b"%d" % pages.renders)

    assert (await pages.get("k", render)).body == b"1"
    await trio.sleep(4.9)
    assert (await pages.get("k", render)).body == b"1"  # still within the period
    await trio.sleep(0.1)
    assert (await pages.get("k", render)).body == b"2"  # the next period renders again


async def test_a_slow_render_is_kept_longer(autojump_clock):
    """Rendering one page takes at most a tenth of the time, however slow it is."""
    pages = SharedRender(max_age=2.0, duty=0.1)

    async def render() -> Page:
        await trio.sleep(1.0)  # a loaded host: 1 s per render
        return Page(code=200, content_type="text/plain", body=b"%d" % pages.renders)

    began = trio.current_time()
    assert (await pages.get("k", render)).body == b"1"
    await trio.sleep(began + 9.9 - trio.current_time())
    assert (await pages.get("k", render)).body == b"1"  # kept 10 x 1 s, not 2 s
    await trio.sleep(0.1)
    assert (await pages.get("k", render)).body == b"2"


async def test_every_reader_gets_the_same_body_object(autojump_clock):
    """A reader that never reads holds a reference to the shared body, not a copy."""
    pages = SharedRender(max_age=1.0)
    renders = []

    async def render() -> Page:
        await trio.sleep(0.5)  # readers arrive while it renders
        renders.append(bytes(1_000_000))
        return Page(code=200, content_type="text/plain", body=renders[-1])

    got = []

    async def read():
        got.append(await pages.get("metrics", render))

    async with trio.open_nursery() as readers:
        for _ in range(20):
            readers.start_soon(read)
    assert len(renders) == 1 and all(p.body is renders[0] for p in got)


async def test_a_failed_page_is_not_kept(autojump_clock):
    pages = SharedRender(max_age=10.0)
    codes = iter([503, 200, 500])

    async def render() -> Page:
        return Page(code=next(codes), content_type="text/plain", body=b"x")

    assert (await pages.get("k", render)).code == 503
    assert (await pages.get("k", render)).code == 200
    assert (await pages.get("k", render)).code == 200  # kept: no third render
    assert pages.renders == 2


async def test_openmetrics_when_the_scraper_asks(nursery):
    _, port = await nursery.start(lambda task_status: run_http_server(
        "127.0.0.1:0", Handle(), task_status=task_status))
    r = await get(port, "/metrics", accept="application/openmetrics-text;version=1.0.0,"
                                            "text/plain;version=0.0.4;q=0.5")
    assert r.headers["content-type"] == "application/openmetrics-text; version=1.0.0; charset=utf-8"
    names = {f.name for f in parse_om(r.text)}
    assert "kglb:control_plane:balancer_state" in names
    r = await get(port, "/metrics", accept="text/plain")
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"

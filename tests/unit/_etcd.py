"""A real etcd (Debian's etcd-server) on loopback for the discovery tests, and a TCP cutter."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import time
from contextlib import asynccontextmanager
from functools import partial

import httpx
import pytest
import trio

from actors.discovery.etcd import prefix_end

ETCD = shutil.which("etcd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


class Etcd:
    """One etcd member with a temporary data dir; kill() and start() keep its data and ports."""

    def __init__(self, data_dir) -> None:
        if ETCD is None:
            reason = "etcd is not installed (tools/debian-deps.sh installs etcd-server)"
            if os.environ.get("CI"):  # CI installs it: a missing etcd is a failure there
                pytest.fail(reason)
            pytest.skip(reason)
        self.data_dir = str(data_dir)
        self.port, self.peer = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        peer = f"http://127.0.0.1:{self.peer}"
        self.process = subprocess.Popen(
            [ETCD, "--name", "test", "--data-dir", self.data_dir,
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"test={peer}", "--log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.process.returncode}")
            time.sleep(0.05)
        raise RuntimeError("etcd did not become healthy in 30 s")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def _post(self, path: str, body: dict) -> dict:
        response = httpx.post(f"{self.url}{path}", json=body, timeout=5)
        response.raise_for_status()
        return response.json()

    def put(self, key: str, value: str) -> int:
        """Put; returns the new revision."""
        return int(self._post("/v3/kv/put", {"key": b64(key), "value": b64(value)})
                   ["header"]["revision"])

    def delete(self, key: str) -> int:
        return int(self._post("/v3/kv/deleterange", {"key": b64(key)})["header"]["revision"])

    def delete_prefix(self, prefix: str) -> int:
        return int(self._post("/v3/kv/deleterange", {
            "key": b64(prefix), "range_end": b64(prefix_end(prefix.encode()))})
            ["header"]["revision"])

    def compact(self, revision: int) -> None:
        self._post("/v3/kv/compaction", {"revision": str(revision), "physical": True})


class Cutter:
    """A TCP proxy to ``port`` that the test can cut (drop every connection, refuse new ones)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.port = 0
        self.open = True
        self._scopes: set[trio.CancelScope] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        self.open = False
        for scope in list(self._scopes):
            scope.cancel()

    async def _pipe(self, source, sink) -> None:
        async for data in source:
            await sink.send_all(data)

    async def _handle(self, client) -> None:
        if not self.open:
            await client.aclose()
            return
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                async with client, await trio.open_tcp_stream("127.0.0.1", self.target) as up:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._pipe, client, up)
                        nursery.start_soon(self._pipe, up, client)
            except* (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # either side went away: the proxied connection ends
            finally:
                self._scopes.discard(scope)


@asynccontextmanager
async def cutter(port: int):
    proxy = Cutter(port)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, proxy._handle, 0, host="127.0.0.1"))
        proxy.port = listeners[0].socket.getsockname()[1]
        yield proxy
        nursery.cancel_scope.cancel()

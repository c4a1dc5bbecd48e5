"""sd_notify against a unix datagram socket in a temp dir, the watchdog in virtual time."""

from __future__ import annotations

import os
import socket

import pytest
import trio

from actors.sdnotify import notify, run_watchdog, watchdog_interval


@pytest.fixture
def listener(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    yield path, sock
    sock.close()


def received(sock) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096))
        except BlockingIOError:
            return out


def test_notify_sends_to_the_socket(listener):
    path, sock = listener
    env = {"NOTIFY_SOCKET": path}
    assert notify("READY=1", environ=env)
    assert notify("STOPPING=1", environ=env)
    assert received(sock) == [b"READY=1", b"STOPPING=1"]


def test_abstract_socket():
    name = f"kglb-trio-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        assert notify("READY=1", environ={"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(100) == b"READY=1"


def test_no_socket_or_a_dead_one_does_nothing(tmp_path):
    assert not notify("READY=1", environ={})
    assert not notify("READY=1", environ={"NOTIFY_SOCKET": str(tmp_path / "missing")})
    assert not notify("READY=1", environ={"NOTIFY_SOCKET": "vsock:2:1234"})


def test_watchdog_interval(listener):
    path, _ = listener
    assert watchdog_interval(environ={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_interval(environ={"NOTIFY_SOCKET": path}) is None
    assert watchdog_interval(environ={"WATCHDOG_USEC": "30000000"}) is None
    assert watchdog_interval(environ={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000",
                                      "WATCHDOG_PID": "1"}) is None  # meant for another process
    assert watchdog_interval(environ={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000",
                                      "WATCHDOG_PID": str(os.getpid())}) == 30.0


async def test_watchdog_pings_at_half_the_period(listener, autojump_clock):
    path, sock = listener
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"}
    with trio.move_on_after(22):
        async with trio.open_nursery() as nursery:
            interval = await nursery.start(lambda task_status: run_watchdog(
                environ=env, task_status=task_status))
            assert interval == 10.0
    # pings at 0, 5, 10, 15, 20
    assert received(sock) == [b"WATCHDOG=1"] * 5


async def test_watchdog_returns_when_not_supervised():
    async with trio.open_nursery() as nursery:
        assert await nursery.start(lambda task_status: run_watchdog(
            environ={}, task_status=task_status)) is None

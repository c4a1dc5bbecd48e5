"""The two ends of the failover tests' long-lived connections (stdlib only).

``server NAME PORT``: on each real, an echo server that first sends its name.
``client VIP PORT LONG FIRST_PORT STOP_FILE``: in the client namespace, LONG
connections from source ports FIRST_PORT.., each pinging every 0.3 s, plus a
new short connection every 0.2 s, until STOP_FILE exists; then one JSON line
on stdout: per long connection its real, pings, longest wait for an answer
and how it broke (null: never; "stalled" if no answer for STALLED s at the
end), and the new connections that succeeded and failed (when each began).
"""

from __future__ import annotations

import json
import os
import socket
import socketserver
import sys
import threading
import time

PING = 0.3
NEW = 0.2
#: An answer slower than this means the connection is lost. Generous: under
#: emulation a retransmission after the path changed can take seconds.
TIMEOUT = 10.0
#: A connection whose last answer is older than this at the end has stalled.
STALLED = 6.0


def serve(name: str, port: int) -> None:
    class Echo(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.wfile.write(f"{name}\n".encode())
            for line in self.rfile:
                self.wfile.write(line)

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.daemon_threads = True
    with socketserver.ThreadingTCPServer(("0.0.0.0", port), Echo) as server:
        server.serve_forever()


def _open(vip: str, port: int, source_port: int = 0) -> tuple[socket.socket, object, str]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.settimeout(TIMEOUT)
    sock.bind(("0.0.0.0", source_port))
    sock.connect((vip, port))
    lines = sock.makefile("rb")
    return sock, lines, lines.readline().decode().strip()


def _exchange(sock: socket.socket, lines, text: str) -> None:
    sock.sendall(f"{text}\n".encode())
    answer = lines.readline().decode().strip()
    if answer != text:
        raise ConnectionError(f"answer {answer!r} to {text!r}")


def client(vip: str, port: int, count: int, first: int, stop_file: str) -> None:
    long: dict[int, dict] = {}
    stop = threading.Event()

    def keep(source_port: int, sock: socket.socket, lines) -> None:
        entry = long[source_port]
        while not stop.is_set():
            sent = time.monotonic()
            try:
                _exchange(sock, lines, f"ping {entry['pings']}")
            except OSError as exc:
                entry["broken"] = f"{type(exc).__name__}: {exc} at {time.time():.1f}"
                return
            entry["pings"] += 1
            entry["last_ok"] = time.monotonic()
            entry["longest"] = round(max(entry["longest"], entry["last_ok"] - sent), 3)
            time.sleep(PING)
        sock.close()

    for i in range(count):
        sock, lines, name = _open(vip, port, first + i)
        long[first + i] = {"real": name, "pings": 0, "broken": None, "longest": 0.0,
                           "last_ok": time.monotonic()}
        threading.Thread(target=keep, args=(first + i, sock, lines), daemon=True).start()
    print("established", flush=True)
    new_ok, new_failed = 0, []
    while not os.path.exists(stop_file):
        started = time.time()
        try:
            sock, lines, _ = _open(vip, port)
            _exchange(sock, lines, "hello")
            sock.close()
            new_ok += 1
        except OSError as exc:
            new_failed.append({"started": started, "error": f"{type(exc).__name__}: {exc}"})
        time.sleep(NEW)
    stop.set()
    time.sleep(PING + 0.1)
    now = time.monotonic()
    for entry in long.values():
        if entry["broken"] is None and now - entry.pop("last_ok") > STALLED:
            entry["broken"] = "stalled"
        entry.pop("last_ok", None)
    print(json.dumps({"long": long, "new_ok": new_ok, "new_failed": new_failed}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])

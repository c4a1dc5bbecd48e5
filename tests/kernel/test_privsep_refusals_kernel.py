"""The --privsep writer process fed hostile frames on a real kernel (issue 18, problem 2).

The writer is kglb-trio's own (``kglb-trio --privsep --user 65534``, forked
from this process so that nothing is imported again under emulation), with one
change: the program its unprivileged side execs, after dropping to the user
with no capabilities, is a shim that hands its end of the socketpair to this
test. The test is then what a compromised unprivileged side would be. It sends
garbage, states naming a foreign service, a VIP, a service and a route outside
the config, settings other than the config's, a message of no kind and an
invalid state, then breaks the stream three ways (oversized, empty and
truncated frames), each time on the connection of a new unprivileged side the
writer started: every refusal reason the writer has, once. Each input is
refused, counted by reason in the writer's reports and logged; the writer
keeps running, and the IPVS table and the addresses are byte-for-byte what
they were.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest
from _unprivileged import IN_VM, unprivileged_flags

import actors.cli
import actors.dataplane.ipvs  # noqa: F401 (imported before the fork, as the writer needs it)
import actors.writer_process
from actors.privsep_report import decode_report
from kglb import (
    DataPlaneState,
    ForwardMethod,
    LinkAddress,
    Real,
    RealKey,
    Route,
    Service,
    ServiceKey,
    ServiceState,
)
from kglb.pb import privsep_pb2
from kglb.privsep import (
    REFUSAL_REASONS,
    FrameReader,
    StateFrame,
    StopFrame,
    encode_frame,
    encode_to_writer,
)

VIP, PORT = "10.1.0.100", 80
REALS = ("10.3.0.1", "10.3.0.2")
FOREIGN = "10.96.0.1"  # a service of another tool (kube-proxy's look)
FOREIGN_ADDRESS = "10.0.0.99/32"

pytestmark = pytest.mark.skipif(not IN_VM, reason="changes /root's mode: only inside the VM")

# The unprivileged side's program: pass our end of the socketpair to the test,
# then live as long as the writer keeps the connection (the writer waits for
# its unprivileged side to exit before starting the next).
SHIM = """
import select, socket, sys
fd, path = int(sys.argv[1]), sys.argv[2]
test = socket.socket(socket.AF_UNIX)
test.connect(path)
socket.send_fds(test, [b"fd"], [fd])
test.close()
poll = select.poll()
poll.register(fd, select.POLLRDHUP)
poll.poll()
"""


def _config(directory: Path) -> Path:
    path = directory / "config.json"
    path.write_text("""{"balancers": [{
        "name": "web", "setupName": "refusals",
        "lbService": {"ipvsService": {"tcpAttributes": {"address": {"ipv4": "%s"}, "port": %d},
                                      "scheduler": "WRR"}},
        "upstreamRouting": {"forwardMethod": "MASQ"},
        "upstreamDiscovery": {"port": %d, "staticAttributes": {"hosts": ["%s", "%s"]}},
        "upstreamChecker": {"checker": {"dummy": {}}, "intervalMs": 1000},
        "dynamicRouting": {}}]}""" % (VIP, PORT, PORT, *REALS))
    path.chmod(0o644)
    return path


def _start_writer(config: Path, state: Path, log: Path, listen: str, flags: list[str]) -> int:
    """Fork kglb-trio --privsep (the writer process) with the shim as its unprivileged side."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(out, 1)
        os.dup2(out, 2)
        # pytest's capture replaced sys.stdout/stderr: the writer logs to stderr, the log file.
        sys.stdout = sys.stderr = open(out, "w", buffering=1, closefd=False)  # noqa: SIM115
        real = actors.writer_process.unprivileged_argv

        def shim_argv(args, fd, config):
            drop = real(args, fd, config)  # the real drop to the user, then the shim
            return [*drop[:drop.index("--") + 1], sys.executable, "-S", "-c", SHIM, str(fd),
                    listen]

        actors.writer_process.unprivileged_argv = shim_argv
        code = actors.cli.main(["--config", str(config), "--privsep", *flags,
                                "--state-file", str(state), "--log-format", "console"])
    finally:
        os._exit(code)


class Peer:
    """One connection to the writer, as the unprivileged side holds it: frames out, reports in."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = FrameReader()
        self.report = None

    @classmethod
    def accept(cls, listener: socket.socket) -> Peer:
        listener.settimeout(120)  # a new unprivileged side starts Python under emulation
        conn, _ = listener.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 16, 1)
        return cls(socket.socket(fileno=fds[0]))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, message) -> None:
        self.send_raw(encode_frame(encode_to_writer(message)))

    def wait_report(self, predicate, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while self.report is None or not predicate(self.report):
            left = deadline - time.monotonic()
            assert left > 0, f"no such report; last: {self.report}"
            if select.select([self.sock], [], [], left)[0]:
                data = self.sock.recv(1 << 16)
                assert data, "the writer closed the connection"
                for payload in self.reader.feed(data):
                    self.report = decode_report(payload)
        return self.report

    def wait_closed(self, timeout: float = 30.0) -> None:
        """The writer dropped this connection (what it does after a broken frame)."""
        self.sock.settimeout(timeout)
        while self.sock.recv(1 << 16):
            pass
        self.sock.close()


def _service(address: str, scheduler: str = "wrr") -> ServiceState:
    return ServiceState(service=Service(key=ServiceKey.tcp(address, PORT), scheduler=scheduler),
                        reals=tuple(Real(key=RealKey(address=r, port=PORT), weight=1,
                                         forward=ForwardMethod.MASQ) for r in REALS))


def _state(*services: ServiceState, vips=(VIP,)) -> DataPlaneState:
    return DataPlaneState(services=services,
                          addresses=tuple(LinkAddress(address=v) for v in vips))


def _kernel() -> tuple[str, str]:
    def run(*command):
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout

    return run("ipvsadm", "-Ln", "--sort"), run("ip", "-o", "addr")


def test_hostile_frames_are_refused_counted_logged_and_the_kernel_is_unchanged():
    directory = Path(tempfile.mkdtemp(prefix="kglb-refusals-"))
    flags = unprivileged_flags(directory)  # the shim, as the user, execs Python and reaches us
    subprocess.run(f"ipvsadm -A -t {FOREIGN}:443 -s rr && "
                   f"ipvsadm -a -t {FOREIGN}:443 -r 10.2.0.1:6443 -m && "
                   f"ip addr add {FOREIGN_ADDRESS} dev lo", shell=True, check=True)
    log = directory / "writer.log"
    listen = str(directory / "peer.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(listen)
    os.chmod(listen, 0o777)  # the shim runs as the unprivileged user
    listener.listen(4)
    pid = _start_writer(_config(directory), directory / "owned.json", log, listen, flags)
    try:
        peer = Peer.accept(listener)
        good = _state(_service(VIP))
        peer.send(StateFrame(sequence=1, state=good))
        peer.wait_report(lambda r: r.applied_sequence == 1)
        before = _kernel()
        assert f"{VIP}:{PORT}" in before[0] and f"{FOREIGN}:443" in before[0]

        # Whole payloads: refused one by one, the connection goes on.
        kube = ServiceState(service=Service(key=ServiceKey.tcp(FOREIGN, 443), scheduler="rr"))
        peer.send_raw(encode_frame(b"\xff\xfe not a protobuf message"))
        peer.send(StateFrame(sequence=2, state=_state(_service(VIP), kube)))  # a foreign service
        peer.send(StateFrame(sequence=3, state=_state(_service(VIP), vips=(VIP, "10.1.0.200"))))
        peer.send(StateFrame(sequence=4, state=_state(_service(VIP), _service("10.1.0.201"))))
        peer.send(StateFrame(sequence=5, state=_state(_service(VIP, scheduler="rr"))))
        route = Route(prefix=f"{VIP}/32", local_asn=65001, peer_asn=65000)  # no BGP configured
        peer.send(StateFrame(sequence=6, state=replace(_state(_service(VIP)), routes=(route,))))
        peer.send_raw(encode_frame(b"\x18\x01"))  # a protobuf field of no message of ours
        invalid = privsep_pb2.ToWriter()
        invalid.desired.sequence = 7
        invalid.desired.state.balancers.add()  # a balancer with no IPVS service
        peer.send_raw(encode_frame(invalid.SerializeToString()))
        whole = {"garbage": 1, "service not allowed": 2, "address not allowed": 1,
                 "settings not allowed": 1, "route not allowed": 1, "unknown message": 1,
                 "invalid state": 1}
        peer.wait_report(lambda r: r.stats.refused == whole)
        assert _kernel() == before

        # Broken streams: each drops the connection; the writer starts a new unprivileged
        # side (a new shim here) and keeps the kernel as it is meanwhile.
        counted = dict(whole)
        for reason, data in (("oversized", struct.pack(">I", (64 << 20) + 1)),
                             ("empty", struct.pack(">I", 0)),
                             ("truncated", struct.pack(">I", 100) + b"a part only")):
            peer.send_raw(data)
            if reason == "truncated":
                peer.sock.shutdown(socket.SHUT_WR)
            peer.wait_closed()
            counted[reason] = 1
            peer = Peer.accept(listener)
            peer.wait_report(lambda r, counted=counted: r.stats.refused == counted)
            assert _kernel() == before, reason
        assert os.waitpid(pid, os.WNOHANG) == (0, 0), "the writer process exited"
        assert set(counted) == set(REFUSAL_REASONS)  # every reason the writer has, once
        text = log.read_text()
        assert text.count("frame refused; the kernel is unchanged") == sum(counted.values())
        for reason in counted:
            assert reason in text, reason
        print(f"refused, by reason: {counted}")

        # A graceful stop still works: what the writer owns goes, the foreign objects stay.
        peer.send(StopFrame())
        _, status = os.waitpid(pid, 0)
        pid = None
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
        ipvs, addresses = _kernel()
        assert f"{VIP}:{PORT}" not in ipvs and f"{FOREIGN}:443" in ipvs
        assert VIP not in addresses and FOREIGN_ADDRESS in addresses
    finally:
        listener.close()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        print(log.read_text()[-3000:] if log.exists() else "no writer log")

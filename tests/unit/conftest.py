"""Shared fixtures of the unit tests (names say whose: check_* belong to the checks tests)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from functools import partial

import pytest
import trio


@pytest.fixture
async def check_serve(nursery):
    """Start a trio TCP server on loopback: ``await check_serve(handler, host) -> port``."""

    async def serve(handler, host: str = "127.0.0.1") -> int:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host=host))
        return listeners[0].socket.getsockname()[1]

    return serve


@pytest.fixture(scope="session")
def check_certificate(tmp_path_factory) -> tuple[str, str]:
    """(cert, key) files of a self-signed certificate made with ``openssl req`` now."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", "/CN=test.invalid", "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.fixture
def check_server_tls(check_certificate) -> ssl.SSLContext:
    """A server-side SSLContext with the test certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*check_certificate)
    return context

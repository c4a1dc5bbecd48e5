"""Kernel tests: they need a kernel with ip_vs and run as root inside the VM
(``make kernel`` = ``tools/run-kernel-tests.sh``). In the VM a missing ip_vs
is a failure; elsewhere the tests skip.

Every test starts with an empty IPVS table and gets a clean ``lo``; tests use
only 10.x / fd00:: addresses on ``lo`` or inside namespaces they create.
"""

import ipaddress
import os
import subprocess

import pytest

IN_VM = os.environ.get("IPVSVM_GUEST") == "1"


def pytest_collection_modifyitems(config, items):
    if os.path.exists("/proc/net/ip_vs"):
        return
    if IN_VM:
        raise pytest.UsageError("inside the VM but /proc/net/ip_vs is missing: modprobe ip_vs failed")
    skip = pytest.mark.skip(reason="needs a kernel with ip_vs: run `make kernel`")
    for item in items:
        item.add_marker(skip)


def _test_addresses_on_lo() -> list[str]:
    out = subprocess.run(["ip", "-o", "addr", "show", "dev", "lo"], capture_output=True, text=True, check=True)
    found = []
    for line in out.stdout.splitlines():
        address = line.split()[3]
        ip = ipaddress.ip_interface(address).ip
        if ip in ipaddress.ip_network("10.0.0.0/8") or ip in ipaddress.ip_network("fd00::/8"):
            found.append(address)
    return found


@pytest.fixture(autouse=True)
def clean_kernel():
    """An empty IPVS table and no test VIPs on lo, before and after each test."""
    subprocess.run(["ipvsadm", "-C"], check=True)
    yield
    subprocess.run(["ipvsadm", "-C"], check=True)
    for address in _test_addresses_on_lo():
        subprocess.run(["ip", "addr", "del", address, "dev", "lo"], check=True)

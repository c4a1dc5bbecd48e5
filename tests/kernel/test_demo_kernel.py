"""`make demo` where the kernel has ip_vs: the demo drives real IPVS and cleans up."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def ipvs_services() -> list[str]:
    out = subprocess.run(["ipvsadm", "-Sn"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.startswith("-A")]


def test_demo_uses_the_kernel_and_leaves_nothing_behind():
    proc = subprocess.Popen([sys.executable, "-m", "actors.demo", "--duration", "8",
                             "--refresh", "2"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    seen_in_kernel = []
    try:
        for line in proc.stdout:
            if "reals on loopback" in line and not seen_in_kernel:
                assert "kernel IPVS data plane" in line
            if line.startswith("TCP  192.0.2.1:80"):
                seen_in_kernel = seen_in_kernel or ipvs_services()
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    assert any("192.0.2.1:80" in s for s in seen_in_kernel)
    assert ipvs_services() == []
    lo = subprocess.run(["ip", "-o", "addr", "show", "dev", "lo"], capture_output=True,
                        text=True, check=True).stdout
    assert "192.0.2." not in lo

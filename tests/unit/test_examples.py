"""The runnable examples keep working."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_embedding_example_runs_end_to_end():
    out = subprocess.run([sys.executable, "examples/embed.py"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    steps = {part.split("\n", 1)[0]: part for part in out.split("-- ")[1:]}
    healthy, failing = steps["healthy"], steps["198.51.100.2 failing"]
    reloaded, after = steps["reloaded with weightUp 500 (problems: [])"], steps["after graceful shutdown"]
    assert "198.51.100.1:8080=1000, 198.51.100.2:8080=1000" in healthy
    assert "198.51.100.2:8080=0" in failing
    assert "198.51.100.1:8080=500" in reloaded
    assert "TCP 192.0.2.10:80" not in after  # graceful shutdown removed what it owned

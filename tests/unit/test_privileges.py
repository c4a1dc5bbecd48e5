"""Dropping privileges (issue 18): exactly the capabilities asked for survive the exec."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from actors.privileges import CAP_NET_RAW, so_mark_needs_net_admin
from actors.writer_process import unprivileged_argv
from kglb.config import load

EXAMPLES = Path(__file__).parents[2] / "examples"


def _status_after_drop(*options: str) -> dict[str, str]:
    out = subprocess.run([sys.executable, "-m", "actors.privileges", "--user", "0", *options,
                          "--", "cat", "/proc/self/status"], capture_output=True, text=True,
                         check=True).stdout
    return dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping needs root")
@pytest.mark.parametrize("options, expected", [((), 0), (("--net-raw",), 1 << CAP_NET_RAW)])
def test_an_exec_after_the_drop_has_exactly_what_was_kept(options, expected):
    status = _status_after_drop(*options)
    for kind in ("CapEff", "CapPrm", "CapAmb"):
        assert int(status[kind], 16) == expected, kind
    assert status["NoNewPrivs"].strip() == "1"


def test_so_mark_needs_net_admin_before_5_17():
    assert so_mark_needs_net_admin("5.16.0-1-amd64")
    assert not so_mark_needs_net_admin("5.17.0")
    assert not so_mark_needs_net_admin("6.1.0-28-cloud-amd64")
    assert so_mark_needs_net_admin("garbage")


def test_the_unprivileged_side_keeps_net_raw_only_with_fwmarks():
    args = SimpleNamespace(user="kglb-trio", argv=["--config", "c.json", "--privsep"])
    with_fwmarks = load((EXAMPLES / "http_bgp.json").read_bytes())  # enableFwmarks
    without = load((Path(__file__).parent / "configs" / "base.json").read_bytes())
    argv = unprivileged_argv(args, 7, with_fwmarks)
    assert argv[1:7] == ["-m", "actors.privileges", "--user", "kglb-trio", "--net-raw", "--"]
    assert argv[-4:] == ["c.json", "--privsep", "--privsep-fd", "7"]
    assert "--net-raw" not in unprivileged_argv(args, 7, without)

"""read_config() and ``kglb-trio --config FILE --check``: one clear line per problem, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from actors import cli, config_file
from actors.config_file import read_config
from kglb.config import ConfigError

ROOT = Path(__file__).parents[2]
CONFIGS = Path(__file__).parent / "configs"
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))


def check(capsys, path) -> tuple[int, list[str], list[str]]:
    code = cli.main(["--config", str(path), "--check"])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def test_good_file(capsys):
    code, out, err = check(capsys, ROOT / "examples" / "example_config.json")
    assert (code, err) == (0, [])
    assert out == [
        "example-balancer [example-setup]: TCP 192.168.100.10:80 on lo rr - TUNNEL port 80, "
        "2 hosts, check dummy every 10000ms rise 1 fall 1, no bgp",
        f"{ROOT / 'examples' / 'example_config.json'}: OK, 1 balancer",
    ]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_checks_clean(capsys, path):
    code, out, err = check(capsys, path)
    assert (code, err) == (0, [])
    assert not [line for line in out if line.startswith("warning")]


def test_kglb_flag_spelling_and_warnings(capsys, tmp_path):
    path = tmp_path / "c.json"
    path.write_text((CONFIGS / "base.json").read_text().replace('"dynamicRouting": {}',
                                                                '"dynamicRouting": {}, "configureReals": true'))
    assert cli.main(["-config", str(path), "--check"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("base [setup]: TCP 10.0.0.1:80 on lo rr - TUNNEL port 8080, 2 hosts, check tcp")
    assert out[1] == "warning: balancers[0].configureReals: is not implemented (as in kglb): " \
                     "the VIP is not configured on the reals"


def _sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


BAD = {
    "missing": (lambda d: d / "nope.json", "{}: cannot open: no such file"),
    "directory": (lambda d: d, "{}: is a directory, not a config file"),
    "empty": (lambda d: _write(d / "e.json", b""), "{}: the file is empty"),
    "blank": (lambda d: _write(d / "e.json", b" \n\n"), "{}: the file is empty"),
    "too large (sparse, not read)": (lambda d: _sparse(d / "big.json", 17 * 2**20),
                                     "{}: 17825792 bytes is over the 16777216-byte limit"),
    "binary garbage": (lambda d: _write(d / "g.bin", bytes(range(256))),
                       "{}: not UTF-8 text: invalid byte at offset 128"),
    "latin-1": (lambda d: _write(d / "l.json", '{"balancers": [{"name": "é"}]}'.encode("latin-1")),
                "{}: not UTF-8 text: invalid byte at offset 25"),
    "NUL bytes": (lambda d: _write(d / "z.json", b"\0" * 10),
                  "{}: invalid JSON at line 1 column 1: Expecting value"),
    "invalid JSON": (lambda d: CONFIGS / "invalid_json.json",
                     "{}: invalid JSON at line 3 column 18: Expecting property name enclosed in "
                     "double quotes"),
    "not an object": (lambda d: _write(d / "l.json", b"[1]"),
                      "{}: the config must be a JSON object, not a list"),
    "one rule problem": (lambda d: _write(d / "r.json", (CONFIGS / "base.json").read_bytes().replace(
        b'"port": 80}', b'"port": 0}')),
        "{}: balancers[0].lbService.ipvsService.tcpAttributes.port: must not be 0"),
    "a FIFO": (lambda d: _fifo(d / "fifo"), "{}: not a regular file"),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("make, expected", BAD.values(), ids=BAD.keys())
def test_bad_input_gives_one_clear_line(capsys, tmp_path, make, expected):
    path = make(tmp_path)
    code, out, err = check(capsys, path)
    assert (code, out) == (3, [])
    assert err == [expected.format(path)]


def test_unreadable_file(capsys, tmp_path, monkeypatch):
    path = _write(tmp_path / "c.json", b"{}")
    if os.geteuid() == 0:  # root reads anything: simulate the refusal
        def refuse(name, flags, *args):
            raise PermissionError(13, "Permission denied", name)
        monkeypatch.setattr(config_file.os, "open", refuse)
    else:
        path.chmod(0)
    code, _, err = check(capsys, path)
    assert (code, err) == (3, [f"{path}: cannot open: permission denied"])


def test_every_problem_on_its_own_line(capsys):
    path = CONFIGS / "many_problems.json"
    code, out, err = check(capsys, path)
    assert (code, out) == (3, [])
    assert err == [f"{path}: {problem}" for problem in (
        "balancers[0].name: is required",
        "balancers[0].lbService.ipvsService.tcpAttributes.address.ipv4: '10.0.0.300' is not an IP address",
        "balancers[0].lbService.ipvsService.tcpAttributes.port: must not be 0",
        "balancers[0].upstreamChecker.fallCount: must be set when riseCount is set (2); "
        "set both, or neither for 3/2",
        "balancers[0].upstreamDiscovery.staticAttributes.hosts: must not be empty",
        "balancers[0].dynamicRouting.announceLimitRatio: must be between 0 and 1, not 1.5",
    )]


def test_read_config_limit_is_checked_before_reading(tmp_path):
    path = _write(tmp_path / "c.json", b"{}" + b" " * 100)
    with pytest.raises(ConfigError) as info:
        read_config(path, max_bytes=50)
    assert info.value.problems == (f"{path}: 102 bytes is over the 50-byte limit",)
    assert read_config(path).balancers == ()


def test_real_process_exit_codes_and_no_traceback(tmp_path):
    bad = _write(tmp_path / "bad.json", b"\x89PNG\r\n\x1a\n")
    for path, expected in ((ROOT / "examples" / "example_config.json", 0), (bad, 3)):
        run = subprocess.run([sys.executable, "-m", "actors.cli", "--config", str(path), "--check"],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert run.returncode == expected, run.stderr
        assert "Traceback" not in run.stderr + run.stdout
    assert run.stderr == f"{bad}: not UTF-8 text: invalid byte at offset 0\n"

"""README.md runs as written (issue 13, problem 7): the embedding snippet, the commands of
Usage, and the unit file's command lines and paths."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from actors import cli

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()
UNIT = (ROOT / "examples" / "kglb-trio.service").read_text()


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end > 0 else None]


def test_the_embedding_snippet_runs_as_written(tmp_path):
    snippet = re.search(r"```python\n(.*?)```", section("Embedding"), re.S).group(1)
    path = tmp_path / "snippet.py"
    path.write_text(snippet)
    run = subprocess.run([sys.executable, str(path), str(ROOT / "examples/example_config.json")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout.splitlines()
    assert "- TCP  192.168.100.10:80 rr" in out  # the service, applied to the memory kernel
    assert "  -> 192.168.100.100:80 Tunnel 1000" in out  # a real, checked and up
    assert " - 192.168.100.10%lo" in out
    assert "[]" in out  # the reload took the config


def usage_commands() -> list[list[str]]:
    block = re.search(r"```sh\n(.*?)```", section("Usage"), re.S).group(1)
    return [shlex.split(line.split("#")[0]) for line in block.splitlines() if line.strip()]


@pytest.mark.parametrize("argv", usage_commands(), ids=" ".join)
def test_every_usage_command_parses(argv):
    assert argv[0] == "kglb-trio"
    args = argv[1:]
    if args[:1] == ["plan"]:
        parsed = cli.plan_parser().parse_args(args[1:])
    elif args[:1] == ["status"]:
        parsed = cli.status_parser().parse_args(args[1:])
    else:
        parsed = cli.run_parser().parse_args(args)
    if hasattr(parsed, "config"):
        assert parsed.config == "/etc/kglb-trio/config.json"  # one path everywhere


def test_one_config_path_everywhere():
    assert "/etc/kglb/" not in README
    assert "/etc/kglb/" not in UNIT


def unit_command(key: str) -> list[str]:
    return shlex.split(re.search(rf"^{key}=(.*)$", UNIT, re.M).group(1))


@pytest.mark.parametrize("key", ["ExecStartPre", "ExecStart"])
def test_the_unit_runs_the_documented_install(key):
    argv = unit_command(key)
    assert argv[0] == "/opt/kglb-trio/bin/kglb-trio"
    assert "python3 -m venv /opt/kglb-trio" in section("Running it on a load-balancer host")
    cli.run_parser().parse_args(argv[1:])  # every flag exists (a mistake exits)


def test_the_unit_keeps_traffic_across_restarts_and_stops_restarting_on_bad_input():
    assert "--keep-on-exit" in unit_command("ExecStart")
    assert re.search(r"^RestartPreventExitStatus=2 3$", UNIT, re.M)
    assert "### Taking a host out of service" in README

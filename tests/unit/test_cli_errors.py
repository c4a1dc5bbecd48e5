"""Every CLI mistake: one line on stderr naming the flag and the fix, no traceback, and
one exit code per fault for run, ``--check`` and ``plan`` (issue 13, problems 4 and 7)."""

from __future__ import annotations

import socket
import subprocess
import sys
import types
from pathlib import Path

import pytest

from actors import _cmd_plan, _cmd_run, _cmd_status, cli
from actors.exit_codes import ExitCode

ROOT = Path(__file__).parents[2]
EXAMPLE = str(ROOT / "examples" / "example_config.json")


def kglb_trio(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "actors.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def one_line(run: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in run.stderr and "ExceptionGroup" not in run.stderr, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    return lines[0]


def test_unknown_command_names_the_commands():
    run = kglb_trio("stauts")
    assert run.returncode == ExitCode.USAGE
    assert one_line(run) == ("kglb-trio: unknown command 'stauts' (commands: plan, status; "
                             "to run: kglb-trio --config FILE); did you mean 'status'?")


@pytest.mark.parametrize("value, example", [("notaport", "127.0.0.1:5678"),
                                            ("18773", "127.0.0.1:18773"),
                                            ("127.0.0.1:99999", "127.0.0.1:5678")])
@pytest.mark.parametrize("log_format", ["json", "console"])
def test_bad_status_address_is_one_line(capsys, value, example, log_format):
    with pytest.raises(SystemExit) as info:
        cli.main(["--config", EXAMPLE, "-status_port", value, "--log-format", log_format])
    assert info.value.code == ExitCode.USAGE
    assert capsys.readouterr().err == (
        f"kglb-trio: argument -status_port/--status-port/--status-address: {value!r} is not "
        f"HOST:PORT; give e.g. {example} (or :PORT for every address) (see 'kglb-trio --help')\n")


@pytest.mark.parametrize("argv, flag", [
    (["--probe-workers", "many"], "--probe-workers"),
    (["--source-ipv4", "::1"], "--source-ipv4"),
    (["--bgp-neighbor", "nope"], "--bgp-neighbor"),
    (["--bgp-source-address", "x"], "--bgp-source-address"),
    (["--strict"], "--strict"),
])
def test_bad_flag_values_name_the_flag(capsys, argv, flag):
    with pytest.raises(SystemExit) as info:
        cli.main(["--config", EXAMPLE, *argv])
    assert info.value.code == ExitCode.USAGE
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and (err[0].startswith(f"kglb-trio: argument {flag}: ")
                              or err[0].startswith(f"kglb-trio: {flag} ")), err


def test_status_address_in_use_is_one_line_in_json_log_mode(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = "127.0.0.1:%d" % taken.getsockname()[1]
        run = kglb_trio("--config", EXAMPLE, "--dry-run", "-status_port", address,
                        "--log-format", "json", "--state-file", str(tmp_path / "o.json"))
    assert run.returncode == ExitCode.HOST
    assert one_line(run) == (f"kglb-trio: -status_port {address}: cannot listen: address "
                             "already in use; stop what uses it or give another HOST:PORT")


# ------------------------------------------------------------ one table for every command


@pytest.fixture(autouse=True)
def keep_logging(monkeypatch):
    """run configures structlog for the process; tests share the process."""
    monkeypatch.setattr(_cmd_run.logs, "configure", lambda *args, **kwargs: None)
    monkeypatch.setattr(_cmd_plan.logs, "configure", lambda *args, **kwargs: None)


@pytest.fixture
def bad_config(tmp_path) -> str:
    path = tmp_path / "bad.json"
    path.write_text('{"balancers": [{"name": ""}]}')
    return str(path)


@pytest.mark.parametrize("argv", [["--check"], [], ["plan"]], ids=["check", "run", "plan"])
def test_invalid_config_is_the_same_code_for_every_command(capsys, bad_config, argv):
    if argv == ["plan"]:
        code = cli.main(["plan", "--config", bad_config])
    else:
        code = cli.main(["--config", bad_config, "--log-format", "console", *argv])
    assert code == ExitCode.CONFIG == 3
    assert "balancers[0].name: is required" in capsys.readouterr().err


async def test_plan_without_ip_vs_is_a_host_problem(capsys):
    from kglb.config import load

    config = load((ROOT / "examples" / "example_config.json").read_text())

    def no_ip_vs(links):
        raise OSError(2, "No such file or directory")

    code = await _cmd_plan.print_plan(config, "/nonexistent/owned.json", no_ip_vs)
    assert code == ExitCode.HOST == 4
    assert "modprobe ip_vs" in capsys.readouterr().err


def test_run_without_ip_vs_is_a_host_problem(capsys, monkeypatch):
    monkeypatch.setattr(_cmd_run, "_preflight", lambda config: False)
    assert cli.main(["--config", EXAMPLE, "--log-format", "console"]) == ExitCode.HOST


@pytest.mark.parametrize("state_file", ["blocker/owned.json", "."], ids=["under a file", "a dir"])
def test_unusable_state_file_is_found_before_the_kernel_is_touched(capsys, monkeypatch, tmp_path,
                                                                    state_file):
    (tmp_path / "blocker").write_text("")
    monkeypatch.setattr(_cmd_run, "_preflight", lambda config: True)
    monkeypatch.setattr(_cmd_run.trio, "run", lambda *a: pytest.fail("started the control plane"))
    monkeypatch.chdir(tmp_path)
    code = cli.main(["--config", EXAMPLE, "--state-file", state_file])
    assert code == ExitCode.HOST
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"kglb-trio: --state-file {state_file}: "), err


def test_ctrl_c_in_check_is_one_line(capsys, monkeypatch):
    from actors import _cmd_check

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(_cmd_check, "main", interrupted)
    assert cli.main(["--config", EXAMPLE, "--check"]) == ExitCode.INTERRUPTED == 130
    assert capsys.readouterr().err == "kglb-trio: interrupted\n"


def test_status_shows_mh_flags_as_check_and_dry_run_do():
    from test_status_document import CANNED

    doc = {**CANNED, "balancers": [{**CANNED["balancers"][0], "scheduler": "mh",
                                    "flags": ["sched1", "sched2"]}]}
    line = _cmd_status.render_table(doc).splitlines()[3]
    assert line.split()[:4] == ["TCP", "10.0.0.1:80", "mh", "mh-fallback,mh-port"]


def test_status_unreachable_is_one_line(capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = types.SimpleNamespace(status_address=f"127.0.0.1:{port}", json=False)
    assert _cmd_status.main(args) == ExitCode.FAILED
    assert len(capsys.readouterr().err.splitlines()) == 1

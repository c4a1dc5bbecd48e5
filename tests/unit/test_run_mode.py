"""Privilege separation is how ``kglb-trio --config FILE`` runs as root; ``--single-process``
keeps the one-process mode (issue 18: "--single-process keeps today's mode", the default user).

The rules are a pure function (``_run_mode.choose``) tested as a table; the command line is
tested through ``cli.main`` with the host's facts (euid, the user database) replaced, so
nothing here needs root or starts a process.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest
import structlog

from actors import _cmd_run, _run_mode, cli, writer_process
from actors._run_mode import CREATE_USER, CannotSeparate, RunMode, choose
from actors.exit_codes import ExitCode

ROOT = Path(__file__).parents[2]
EXAMPLE = str(ROOT / "examples" / "example_config.json")
SYSTEM_PYTHON = "/usr/bin/python3"
NOT_ROOT = "not started as root: running in one process"
OLD_KERNEL = "tunnelled checks (enableFwmarks) need CAP_NET_ADMIN for SO_MARK"


def _choose(*, exists=("kglb-trio", "nobody"), **flags) -> RunMode:
    facts = dict(single_process=False, privsep=False, user=None, dry_run=False, fwmarks=False,
                 euid=0, old_kernel=False)
    return choose(**{**facts, **flags}, exists=lambda name: name in exists)


@pytest.mark.parametrize("flags, privsep, user, note", [
    # started as root, the default: separated, as the default user or --user
    ({}, True, "kglb-trio", None),
    ({"user": "nobody"}, True, "nobody", None),
    ({"privsep": True}, True, "kglb-trio", None),
    # --single-process: one process, whatever else
    ({"single_process": True}, False, None, None),
    ({"single_process": True, "euid": 1000}, False, None, None),
    # --dry-run touches no kernel: one process, unless --privsep asks for the split
    ({"dry_run": True}, False, None, None),
    ({"dry_run": True, "privsep": True, "user": "nobody"}, True, "nobody", None),
    # not root: nothing to separate, said once
    ({"euid": 1000}, False, None, NOT_ROOT),
    ({"euid": 1000, "privsep": True, "user": "nobody"}, True, "nobody", None),
    # tunnelled checks before 5.17: the default falls back, said once
    ({"fwmarks": True, "old_kernel": True}, False, None, OLD_KERNEL),
    ({"fwmarks": True, "old_kernel": False}, True, "kglb-trio", None),
    ({"fwmarks": False, "old_kernel": True}, True, "kglb-trio", None),
    ({"fwmarks": True, "old_kernel": True, "privsep": True}, True, "kglb-trio", None),
])
def test_the_mode_for_each_rule(flags, privsep, user, note):
    mode = _choose(**flags)
    assert (mode.privsep, mode.user) == (privsep, user)
    assert (mode.note or "").startswith(note or "") and (mode.note is None) == (note is None)


def test_a_missing_default_user_says_how_to_create_it():
    with pytest.raises(CannotSeparate) as info:
        _choose(exists=())
    assert str(info.value) == (
        "the user 'kglb-trio' (privilege separation's unprivileged side) does not exist: create "
        "it with 'useradd --system --no-create-home --shell /usr/sbin/nologin kglb-trio', or "
        "pass --user NAME, or --single-process")


def test_a_missing_given_user_is_named():
    with pytest.raises(CannotSeparate, match="^--user nosuch: no such user;"):
        _choose(user="nosuch")


def test_the_mode_validates():
    with pytest.raises(ValueError):
        RunMode(privsep=True)
    with pytest.raises(ValueError):
        RunMode(privsep=False, user="nobody")


def test_numeric_users_need_no_passwd_entry():
    assert _run_mode.user_exists("4242:4242") and _run_mode.user_exists("root")
    assert not _run_mode.user_exists("no-such-user-kglb-trio-test")


# ------------------------------------------------------------ through the command line


@pytest.fixture
def host(monkeypatch, tmp_path):
    """A host that passes preflight, run as root, where only ``users`` exist; records how
    kglb-trio would have run instead of running it."""
    facts = types.SimpleNamespace(euid=0, users={"nobody"}, started=[], access=None)
    monkeypatch.setattr(_cmd_run.logs, "configure", lambda *args, **kwargs: None)
    monkeypatch.setattr(_cmd_run, "_preflight", lambda config: True)
    monkeypatch.setattr(_run_mode, "euid", lambda: facts.euid)
    monkeypatch.setattr(_run_mode, "user_exists", lambda name: name in facts.users)
    monkeypatch.setattr(_run_mode, "so_mark_needs_net_admin", lambda: False)
    monkeypatch.setattr(_run_mode, "access_problem", lambda user, config: facts.access)

    def privsep(args, config, speaker, dataplane):
        facts.started.append(("privsep", args.user))
        return ExitCode.OK

    def one_process(run, args, config, speaker):
        facts.started.append(("one process", args.user))
        return ExitCode.OK

    monkeypatch.setattr(writer_process, "main", privsep)
    monkeypatch.setattr(_cmd_run.trio, "run", one_process)
    facts.run = lambda *argv: cli.main(["--config", EXAMPLE, "--log-format", "console",
                                        "--state-file", str(tmp_path / "owned.json"), *argv])
    return facts


def test_root_runs_separated_by_default(host):
    host.users.add("kglb-trio")
    assert host.run() == ExitCode.OK
    assert host.run("--user", "nobody") == ExitCode.OK
    assert host.started == [("privsep", "kglb-trio"), ("privsep", "nobody")]


def test_single_process_keeps_the_one_process_mode(host):
    assert host.run("--single-process") == ExitCode.OK
    assert host.started == [("one process", None)]


def test_explicit_privsep_still_works(host):
    assert host.run("--privsep", "--user", "nobody") == ExitCode.OK
    assert host.started == [("privsep", "nobody")]


def test_root_without_the_default_user_exits_in_one_line(host, capsys):
    assert host.run() == ExitCode.HOST
    assert host.started == []
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("kglb-trio: the user 'kglb-trio' ") and CREATE_USER in err
    assert "--user NAME" in err and "--single-process" in err


def test_root_with_an_unknown_user_exits_in_one_line(host, capsys):
    assert host.run("--user", "nosuch") == ExitCode.HOST
    assert host.started == []
    assert capsys.readouterr().err.startswith("kglb-trio: --user nosuch: no such user;")


def test_not_root_runs_in_one_process_and_says_so(host):
    host.euid = 1000
    with structlog.testing.capture_logs() as logs:
        assert host.run() == ExitCode.OK
    assert host.started == [("one process", None)]
    assert [entry["event"] for entry in logs if entry["event"].startswith(NOT_ROOT)]


def test_dry_run_runs_in_one_process_without_the_user(host, capsys):
    assert host.run("--dry-run") == ExitCode.OK
    assert host.started == [("one process", None)]
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("argv, says", [
    (["--privsep", "--single-process"], "not allowed with argument"),
    (["--single-process", "--user", "nobody"], "--single-process has none"),
])
def test_contradicting_flags_are_a_usage_error(host, capsys, argv, says):
    with pytest.raises(SystemExit) as info:
        host.run(*argv)
    assert info.value.code == ExitCode.USAGE
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and says in err[0], err
    assert host.started == []


def test_a_user_that_cannot_start_the_unprivileged_side_exits_in_one_line(host, capsys):
    host.access = "cannot execute /opt/python: permission denied"
    assert host.run("--user", "nobody") == ExitCode.HOST
    assert host.started == []
    assert capsys.readouterr().err == (
        "kglb-trio: the unprivileged side (user nobody) cannot execute /opt/python: permission "
        "denied; give it access, or pass --user NAME or --single-process\n")


@pytest.mark.skipif(os.geteuid() != 0, reason="trying as another user takes root")
def test_a_config_the_user_cannot_read_is_found_by_trying(tmp_path, monkeypatch):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    config = private / "config.json"
    config.write_text("{}")
    if Path(SYSTEM_PYTHON).exists():  # one every user may exec (a venv's may not be)
        monkeypatch.setattr(sys, "executable", SYSTEM_PYTHON)
    monkeypatch.chdir(ROOT)
    problem = _run_mode.access_problem("65534", str(config))
    # The config is named, unless this host keeps Python or the repository from other users.
    assert problem is not None and (str(config) in problem or "execute" in problem
                                    or "actors" in problem), problem
    assert _run_mode.access_problem("0", str(config)) is None  # root: nothing to find

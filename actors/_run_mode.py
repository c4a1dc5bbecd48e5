"""How ``kglb-trio --config FILE`` runs: privilege-separated (the default as root) or not.

The rules, in order (README "Privilege separation"):

1. ``--single-process``: one process, as before issue 18.
2. ``--privsep`` (explicit): separated, whatever else holds; what cannot work
   then fails loudly (an unknown user here, an old kernel with tunnelled
   checks in the writer process), since the operator asked for it.
3. ``--dry-run``: one process. It touches no kernel, so there is no
   CAP_NET_ADMIN to keep away from the parsers, and it runs as any user.
4. Not root: one process, said in one log line. The split starts the
   unprivileged side as another user, which takes root (CAP_SETUID).
5. Tunnelled checks (``enableFwmarks``) before Linux 5.17: one process, with a
   warning. SO_MARK needs CAP_NET_ADMIN there, so the probes would keep the very
   capability the split takes away; refusing to start would break configs that
   ran before the split became the default.
6. Otherwise separated, as ``--user`` (default ``kglb-trio``). A user that
   does not exist stops the start with one line saying how to create it: a
   restart after ``useradd`` then works (exit code HOST, which systemd retries).
   So does one that cannot exec Python or read the config (``access_problem``).

``choose`` is pure (the host's facts come in as arguments); ``for_host`` reads them.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

from .cli import DEFAULT_USER
from .privileges import so_mark_needs_net_admin

__all__ = ["CannotSeparate", "RunMode", "access_problem", "choose", "euid", "for_host",
           "user_exists"]

CREATE_USER = f"useradd --system --no-create-home --shell /usr/sbin/nologin {DEFAULT_USER}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunMode:
    """``privsep``: a writer process plus an unprivileged side run as ``user``; else one
    process (``user`` None). ``note``: the one line to log about the choice, if any."""

    privsep: bool
    user: str | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        if self.privsep != (self.user is not None):
            raise ValueError("a user is given exactly when privilege separation is on")


class CannotSeparate(Exception):
    """Privilege separation is asked for (or the default) but cannot start; the message says
    what to do, in one line."""


def user_exists(user: str) -> bool:
    """``UID[:GID]`` always does (no passwd entry is needed to become it); a name if known."""
    if user.replace(":", "").isdigit():
        return True
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def choose(*, single_process: bool, privsep: bool, user: str | None, dry_run: bool,
           fwmarks: bool, euid: int, old_kernel: bool,
           exists: Callable[[str], bool]) -> RunMode:
    """The mode for these flags on this host (module docstring); raises CannotSeparate."""
    if single_process:
        return RunMode(privsep=False)
    if not privsep:
        if dry_run:
            return RunMode(privsep=False)
        if euid != 0:
            return RunMode(privsep=False, note=(
                "not started as root: running in one process (privilege separation starts "
                "the unprivileged side as another user, which needs root)"))
        if fwmarks and old_kernel:
            return RunMode(privsep=False, note=(
                "tunnelled checks (enableFwmarks) need CAP_NET_ADMIN for SO_MARK before Linux "
                "5.17: running in one process, without privilege separation"))
    name = user or DEFAULT_USER
    if not exists(name):
        if user is None:
            raise CannotSeparate(
                f"the user {DEFAULT_USER!r} (privilege separation's unprivileged side) does not "
                f"exist: create it with '{CREATE_USER}', or pass --user NAME, or "
                "--single-process")
        raise CannotSeparate(f"--user {user}: no such user; create it or give another "
                             "NAME or UID[:GID]")
    return RunMode(privsep=True, user=name)


def euid() -> int:
    return os.geteuid()


def access_problem(user: str, config: str) -> str | None:
    """Why ``user`` could not run the unprivileged side here, or None: it must exec this
    Python, import kglb-trio and read the config (at start and on every reload). Found by
    trying, as ``user`` with no supplementary group (as ``privileges.drop_to`` leaves it), so
    permissions, ACLs and mount options all count; else the writer would restart a side that
    cannot start, forever. Only root can try; for root itself there is nothing to find."""
    from .privileges import user_ids

    uid, gid = user_ids(user)
    if os.geteuid() != 0 or uid == 0:
        return None
    probe = "import sys, actors.cli; open(sys.argv[1], 'rb').close()"
    try:
        done = subprocess.run([sys.executable, "-c", probe, config], user=uid, group=gid,
                              extra_groups=[], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
    except PermissionError as e:
        path = e.filename or sys.executable
        real = os.path.realpath(path)
        return f"cannot execute {path}{f' ({real})' if real != path else ''}: permission denied"
    except (OSError, subprocess.TimeoutExpired):
        return None  # not a permission we can name; the writer's log will show what happens
    if done.returncode == 0:
        return None
    last = (done.stderr.strip().splitlines() or ["exit status %d" % done.returncode])[-1]
    return f"cannot start: {last}"


def for_host(args, fwmarks: bool) -> RunMode:
    """``choose`` with this process's flags and this host's facts (each read through a module
    function, which the command-line tests replace)."""
    return choose(single_process=args.single_process, privsep=args.privsep, user=args.user,
                  dry_run=args.dry_run, fwmarks=fwmarks, euid=euid(),
                  old_kernel=so_mark_needs_net_admin(), exists=user_exists)

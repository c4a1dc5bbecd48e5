"""Becoming the unprivileged side: a user, no capabilities (CAP_NET_RAW with fwmarks).

``python -m actors.privileges --user NAME [--net-raw] -- PROGRAM ARGS...`` is
what the writer process starts: a fresh, single-threaded process that drops
to ``NAME`` and then execs ``PROGRAM`` (the unprivileged kglb-trio), so no
privileged Python code runs after a fork in a threaded parent.

Dropping, in order: no ambient capabilities; keep the permitted set across
setuid only if one capability is to stay (PR_SET_KEEPCAPS); supplementary
groups cleared, gid and uid set (real, effective, saved); then the three
capability sets are set to exactly what stays, and it is raised as ambient
so it survives the exec (and the execs of probe workers); finally
no_new_privs, so nothing exec'd later (a setuid binary) can gain privileges.

Capabilities are set with ctypes on glibc's capset/prctl: two calls do not
justify a new dependency.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import sys

__all__ = ["CAP_NET_ADMIN", "CAP_NET_RAW", "capabilities", "drop_to", "so_mark_needs_net_admin"]

CAP_NET_ADMIN = 12
CAP_NET_RAW = 13

_PR_SET_KEEPCAPS = 8
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_RAISE = 2
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_CAPABILITY_VERSION_3 = 0x20080522


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _prctl(option: int, arg2: int = 0, arg3: int = 0) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), ctypes.c_ulong(0),
                       ctypes.c_ulong(0)), f"prctl({option})")


def _capset(mask: int) -> None:
    header = _Header(_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    for i in range(2):
        word = (mask >> (32 * i)) & 0xFFFFFFFF
        data[i].effective = data[i].permitted = data[i].inheritable = word
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def capabilities(pid: int | str = "self", kind: str = "CapEff") -> int:
    """A capability set of a process, from /proc/PID/status (bit n = capability n)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(kind + ":"):
                return int(line.split()[1], 16)
    raise ValueError(f"no {kind} in /proc/{pid}/status")


def so_mark_needs_net_admin(release: str | None = None) -> bool:
    """True before Linux 5.17, where SO_MARK needs CAP_NET_ADMIN (CAP_NET_RAW is enough after)."""
    release = release if release is not None else os.uname().release
    parts = release.split(".")
    try:
        return (int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)) < (5, 17)
    except (IndexError, ValueError):
        return True


def user_ids(user: str) -> tuple[int, int]:
    """``NAME``, ``UID`` or ``UID:GID`` -> (uid, gid); KeyError for an unknown name."""
    if user.replace(":", "").isdigit():
        uid, _, gid = user.partition(":")
        return int(uid), int(gid or uid)
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def drop_to(user: str, keep: tuple[int, ...] = ()) -> None:
    """Become ``user`` with exactly the capabilities ``keep`` (also after exec). Needs root."""
    uid, gid = user_ids(user)
    mask = sum(1 << cap for cap in keep)
    _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
    _prctl(_PR_SET_KEEPCAPS, 1 if keep else 0)
    if os.geteuid() == 0 or uid != os.getuid():  # a user running itself has nothing to change
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    _capset(mask)
    for cap in keep:
        _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, cap)
    _prctl(_PR_SET_KEEPCAPS, 0)
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") + 1 >= len(argv):
        print("usage: python -m actors.privileges --user NAME [--net-raw] -- PROGRAM ARGS...",
              file=sys.stderr)
        return 2
    split = argv.index("--")
    options, program = argv[:split], argv[split + 1:]
    user = options[options.index("--user") + 1] if "--user" in options else "kglb-trio"
    keep = (CAP_NET_RAW,) if "--net-raw" in options else ()
    try:
        drop_to(user, keep)
    except (OSError, KeyError) as e:
        print(f"kglb-trio: cannot become user {user!r}: {e}", file=sys.stderr)
        return 1
    os.execvp(program[0], program)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

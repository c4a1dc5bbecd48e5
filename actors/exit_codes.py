"""The exit status of every ``kglb-trio`` command, one table (README "Exit codes").

The same fault gives the same status whichever command meets it, so a unit
file or a CI pipeline can act on it: systemd's ``RestartPreventExitStatus``
stops restarting on USAGE and CONFIG, which a restart cannot fix.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    #: Stopped on an error after starting: a crash past the restart budget, a
    #: forced exit (second signal); ``status``: the instance cannot be reached.
    FAILED = 1
    #: The command line is wrong: an unknown command or flag, a bad flag value.
    USAGE = 2
    #: The config file is unusable (or, with ``--check --strict``, has warnings).
    CONFIG = 3
    #: The host is not ready: ip_vs missing, no CAP_NET_ADMIN, the kernel's table
    #: cannot be read, the status address cannot be bound (in use, not local).
    HOST = 4
    #: Ctrl-C (SIGINT) before the run's own signal handling, or in ``--check``, ``plan``,
    #: ``status``: 128 + SIGINT, as shells report it.
    INTERRUPTED = 130

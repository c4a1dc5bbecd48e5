"""Kernel tests start ``kglb-trio`` as root, which runs privilege-separated by default (issue
18): its unprivileged side runs as another user, who must be able to exec Python and read the
repository and the test's config.

The host's Python lives under /root (mode 0700) in this environment and pytest's tmp_path
under /tmp/pytest-of-root (0700): inside the VM those are opened to other users in the VM's
overlay only (the host is not changed). Outside the VM nothing is opened and the tests run
kglb-trio in one process instead, so a run on a host with ip_vs changes no permission there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["USER", "unprivileged_flags"]

IN_VM = os.environ.get("IPVSVM_GUEST") == "1"
#: nobody: a user every host has; never create users on the host.
USER = "65534"
_REPO = Path(__file__).parents[2]


def unprivileged_flags(*folders: Path) -> list[str]:
    """The run flags for a kglb-trio started as root in a test, after opening the Python
    installation, the repository and ``folders`` (with their parents) to ``USER``."""
    if not IN_VM:
        return ["--single-process"]
    os.chmod("/root", 0o755)
    # USER cannot write __pycache__: compile once as root, or every start of the unprivileged
    # side compiles every module again (slow under emulation).
    subprocess.run([sys.executable, "-m", "compileall", "-q", "actors", "kglb"], cwd=_REPO,
                   check=False)
    for folder in folders:
        for directory in (folder, *folder.parents):
            if directory == Path("/"):
                break
            os.chmod(directory, os.stat(directory).st_mode | 0o055)
    return ["--user", USER]

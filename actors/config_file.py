"""Reading the config file: file I/O around the pure ``kglb.config.load``.

Every failure is a ConfigError whose problems each start with the file name
(``/etc/kglb.json: balancers[0].name: is required``), so the command line and
the reload path report them the same way.
"""

from __future__ import annotations

import errno
import os
import stat

from kglb.config import Config, ConfigError, load

#: Larger files are refused before they are read (a config of 500 balancers is ~270 KB).
MAX_CONFIG_BYTES = 16 * 1024 * 1024


def read_config(path: str | os.PathLike[str], *, max_bytes: int = MAX_CONFIG_BYTES) -> Config:
    """Read and load the config file at ``path``. Raises ConfigError (only)."""
    name = os.fspath(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below).
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise ConfigError(f"{name}: cannot open: {_reason(e)}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"{name}: is a directory, not a config file")
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{name}: not a regular file")
        if info.st_size > max_bytes:
            raise ConfigError(f"{name}: {info.st_size} bytes is over the {max_bytes}-byte limit")
        with open(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)  # the file may grow while we read it
    except OSError as e:
        raise ConfigError(f"{name}: cannot read: {_reason(e)}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise ConfigError(f"{name}: over the {max_bytes}-byte limit")
    if not data.strip():
        raise ConfigError(f"{name}: the file is empty")
    try:
        return load(data)
    except ConfigError as e:
        # "file: path: message", as compilers print, so every line stands alone in a log.
        raise ConfigError([f"{name}: {problem}" for problem in e.problems]) from None


def _reason(e: OSError) -> str:
    if e.errno == errno.ENOENT:
        return "no such file"
    return (e.strerror or str(e)).lower()

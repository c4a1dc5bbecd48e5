"""The one verdict on an http response head, for every way an http check runs (sans-I/O).

The plain http check (:mod:`actors._lean_checks`) and the https, proxy and
redirect checks (:mod:`actors.checks.http`) feed the bytes they read into a
:class:`HeadReader` and report what it says, so the same bytes get the same reason however the
check ran. Rules, in the order they decide:

- bytes that cannot begin ``HTTP/`` (garbage, TLS, an HTTP/0.9 body): "bad
  response" at once, without waiting for a line end;
- a status line that is not ``HTTP/1.x NNN ...``: "bad response" as soon as
  its line ends;
- the head ends at the first empty line (``\\r\\n`` or a bare ``\\n``, as Go's
  textproto reader); a header line without a colon is "bad response";
- a head longer than ``MAX_HEAD`` without its end: "header too large" (a real
  that never finishes its headers is not healthy);
- EOF before the head ends: "short read", at once;
- otherwise the status (and the Location header, for redirects) is judged by
  the caller; the body is never read.

Where this differs from Go's net/http (kglb's client) is written in README.md
("Check verdicts").
"""

from __future__ import annotations

from typing import NamedTuple

from ._net import CheckFailure

#: The most of a response head a check reads (Go's client allows 10 MB; a health
#: check needs the status line and, for redirects, Location).
MAX_HEAD = 65536
_PREFIX = b"HTTP/"


class Head(NamedTuple):
    status: int
    location: str | None


def parse_status_line(line: bytes) -> int:
    """The status code of one status line (without its line end); else "bad response"."""
    parts = line.split(b" ", 2)
    if (len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or len(parts[0]) != 8
            or len(parts[1]) != 3 or not parts[1].isdigit()):
        raise CheckFailure("bad response")
    return int(parts[1])


def _line(raw: bytes) -> bytes:
    return raw[:-1] if raw.endswith(b"\r") else raw


class HeadReader:
    """Collects one response head. ``feed`` each chunk, ``eof`` when the peer closed.

    Both return a :class:`Head` when the head is complete, or raise
    ``CheckFailure`` with the verdict; ``feed`` returns None while more is needed.
    """

    __slots__ = ("_data", "_scanned", "_status_done", "limit")

    def __init__(self, limit: int = MAX_HEAD) -> None:
        self.limit = limit
        self._data = b""
        self._scanned = 0  # where the search for the head's end resumes
        self._status_done = False

    @property
    def room(self) -> int:
        """How many more bytes may be read (the bound of the next read)."""
        return self.limit - len(self._data)

    def feed(self, chunk: bytes) -> Head | None:
        data = self._data = self._data + chunk if self._data else chunk
        if not data.startswith(_PREFIX[: len(data)]):
            raise CheckFailure("bad response")
        if not self._status_done:
            end = data.find(b"\n")
            if end < 0:
                return self._unfinished()
            parse_status_line(_line(data[:end]))  # a bad status line fails at once
            self._status_done = True
        start = max(self._scanned - 2, 0)
        end = data.find(b"\n\n", start)
        crlf = data.find(b"\n\r\n", start)
        if crlf >= 0 and (end < 0 or crlf < end):
            end = crlf
        if end < 0:
            self._scanned = len(data)
            return self._unfinished()
        return _judge(data[: end + 1])

    def _unfinished(self) -> None:
        if len(self._data) >= self.limit:
            raise CheckFailure("header too large")
        return None

    @staticmethod
    def eof() -> Head:
        raise CheckFailure("short read")


def _judge(head: bytes) -> Head:
    lines = head.split(b"\n")
    status = parse_status_line(_line(lines[0]))
    location = None
    for raw in lines[1:-1]:
        name, sep, value = _line(raw).partition(b":")
        if not sep or not name or name[-1:] in b" \t":
            raise CheckFailure("bad response")  # Go: malformed MIME header line
        if name.lower() == b"location":
            location = value.strip().decode("latin-1")
    return Head(status, location)

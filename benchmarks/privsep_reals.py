"""The flipping reals of ``privsep-e2e``: ``benchmarks._reals`` that also says when a check was answered.

``python -m benchmarks.privsep_reals --addresses FILE --port P --control SOCKET``
serves HTTP on every address of FILE as ``benchmarks._reals`` does (200, or
503 once ``down ADDR`` was sent), and adds one control command:
``answered ADDR`` replies ``ok T``, T being ``time.monotonic()`` just after
ADDR sent its first answer since its last ``up``/``down`` (``error ...`` if
none was sent yet). That instant is when the check result that changes the
real's health left the real: the start of the latency ``privsep-e2e`` measures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ._reals import _Server, raise_nofile_limit


class AnsweringServer(_Server):
    """``_reals``'s HTTP server, remembering the first answer after each health change."""

    def __init__(self, *, port: int) -> None:
        super().__init__(port=port, protocol="http")
        self.first_answer: dict[str, float] = {}

    def control(self, line: str) -> str:
        verb, _, address = line.strip().partition(" ")
        if verb == "answered":
            at = self.first_answer.get(address)
            return f"ok {at:.6f}" if at is not None else f"error no answer from {address} yet"
        reply = super().control(line)
        if verb in ("up", "down") and reply.startswith("ok"):
            self.first_answer.pop(address, None)
        return reply

    def _answer(self, conn, address: str) -> None:
        super()._answer(conn, address)
        # The connection is gone once its answer went out (an empty read, a
        # client that hung up unanswered, is rare enough to count the same).
        if conn not in self.buffers and address not in self.first_answer:
            self.first_answer[address] = time.monotonic()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.privsep_reals", description=__doc__)
    parser.add_argument("--addresses", required=True, help="file with one address a line")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--control", required=True, help="UNIX socket path for health flips")
    args = parser.parse_args(argv)
    raise_nofile_limit()
    Path(args.control).unlink(missing_ok=True)
    # Serves until the harness terminates it.
    AnsweringServer(port=args.port).serve(Path(args.addresses).read_text().split(), args.control)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""kglb-trio's trio runtime: every task, socket, thread, signal and clock read."""

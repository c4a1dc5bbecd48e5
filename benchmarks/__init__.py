"""kglb-trio's benchmark harnesses. ``python -m benchmarks`` lists them and runs one.

Every figure is reported beside a baseline measured in the same run, as a ratio,
so results hold on a noisy shared machine. See benchmarks/README.md.
"""

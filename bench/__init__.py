"""Benchmarks for Callboard: what a snapshot cycle costs, and what HTTP viewers cost.

`python -m bench` runs at full size (`make bench`); `python -m bench --small` runs at CI size in well
under a minute. Both start their own Redis on a free loopback port, seed the exact Dramatiq layout,
print a table, write every figure to `bench/results/*.json` and exit 1 when an invariant breaks.

Timings on a shared machine are noisy, so every figure is also given as a ratio to a floor measured
in the same run: a bare pipelined `LLEN` round trip for Redis work, a bare `/healthz` for HTTP.
"""

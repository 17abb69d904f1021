"""Benchmarks for Callboard: what a snapshot cycle costs, what Arq's results index costs, what
HTTP viewers cost, what a page weighs in a browser, and what decoding payloads in budgeted decoder
processes costs.

`python -m bench` runs at full size (`make bench`); `python -m bench --small` runs at CI size in well
under a minute. Both start their own Redis on a free loopback port, seed the exact Dramatiq and Arq
layouts, print a table, write every figure to `bench/results/*.json` and exit 1 when an invariant
breaks. `--only snapshot|arq|http|weight|bulk|search|decode|flow` runs one part.

Timings on a shared machine are noisy, so every figure is also given as a ratio to a baseline measured
in the same run: a bare pipelined `LLEN` / `ZCARD` round trip for Redis work, the same cycle with 10
jobs for Arq's 100k, a bare `/healthz` for HTTP, decoding in process for the decode budget. Page
weight is bytes, not time: it is compared with fixed targets.
"""

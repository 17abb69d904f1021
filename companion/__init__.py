"""The worker companion: exact flow figures (done, failed, retried, run and wait times) from inside
Dramatiq and Arq workers, written to Redis for Callboard to read. Opt in with one line:

    broker.add_middleware(FlowMiddleware())          # from callboard.companion.dramatiq import ...
    WorkerSettings = with_flow(WorkerSettings)       # from callboard.companion.arq import ...

It imports nothing but the standard library, redis and the framework, adds no Redis call per job
(figures are added up in the process and flushed every few seconds in one round trip), and never
slows or breaks a job: what it cannot flush it drops and counts (callboard:flow:dropped).
"""

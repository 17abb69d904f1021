"""Dramatiq on Redis: the same file names in every backend package, so the same thing is in the same
place.

    keys.py         every key name and its parser: the one home of the layout
    config.py       what an operator tells Callboard (namespaces, queues, timeouts, results)
    snapshot.py     discovery and the per-cycle snapshot script
    deadletters.py  dead letters read in the background, grouped by cause
    browse.py       one page of a state, or one message, on demand
    codec.py        payloads into the model, in budgeted decoder processes
    controls.py     the write recipes (requeue, run now, delete, recover), atomic in Lua
    backend.py      all of it behind the Backend protocol (collectors/backend.py)

How Dramatiq stores things and why each recipe is safe: docs/dramatiq-redis.md.
"""

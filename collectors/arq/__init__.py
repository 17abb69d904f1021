"""Arq on Redis: the same file names as every backend package.

    keys.py         every key name and its parser: the one home of the layout
    config.py       what an operator tells Callboard (queues, serializer, the workers' settings)
    snapshot.py     discovery and the per-cycle snapshot script
    results.py      the index of stored results Arq itself does not keep (and its failure groups)
    browse.py       one page of a state, or one job, on demand
    codec.py        payloads into the model, with the restricted unpickler, in decoder processes
    controls.py     the write recipes (re-run, delete, abort), atomic with WATCH/MULTI
    backend.py      all of it behind the Backend protocol (collectors/backend.py)

How Arq stores things and why each recipe is safe: docs/arq-redis.md.
"""

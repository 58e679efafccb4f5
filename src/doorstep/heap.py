"""The cyclic garbage collector in the long-running processes.

A full collection walks every object the collector tracks. After start-up `serve` holds
about 200,000 of them (FastAPI, SQLAlchemy, pydantic, the OpenAPI models), nearly all
alive until exit, and on these machines walking them took about 90 ms: every few seconds
under load, a request in flight waited that long. `freeze_startup` leaves them out of
every later collection. What the process allocates afterwards is collected as before.
"""

from __future__ import annotations

import gc


def freeze_startup() -> None:
    """Collect what start-up left behind, then exempt everything still alive from future
    collections (`gc.freeze`). Call once, in a process's entry point, when it is ready:
    never in a library function a test may run many times in one process, since frozen
    cycles are never freed."""
    gc.collect()
    gc.freeze()

"""In-memory state of one sandbox app: clock offset, faults, the world lock, the pusher."""

import threading
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app


@dataclass
class Runtime:
    """What the sandbox keeps outside its database (reset with the world)."""

    clock_offset: float = 0.0
    # endpoint name -> {"errcode", "latency", "times", "http_status", "reset", "non_json",
    # "timeout"} (see faults.py)
    endpoint_faults: dict[str, dict[str, Any]] = field(default_factory=dict)
    # pause_tickets, duplicate, delay (seconds), out_of_order
    push_faults: dict[str, Any] = field(default_factory=dict)
    last_release_check: dict | None = None
    # Serializes writes to the world: SQLite and simple rules beat throughput here.
    lock: threading.RLock = field(default_factory=threading.RLock)
    pusher: Any = None
    ticket_thread: Any = None
    # Requests held by a `timeout` fault wait on this; clearing faults or a reset wakes them.
    hang_released: threading.Event = field(default_factory=threading.Event)

    def reset(self) -> None:
        """Forget clock travel, faults and the last release check."""
        self.clock_offset = 0.0
        self.endpoint_faults.clear()
        self.push_faults.clear()
        self.last_release_check = None
        self.hang_released.set()
        self.hang_released = threading.Event()


def get(app: Flask | None = None) -> Runtime:
    """Return the runtime of `app` (default: the current app)."""
    return (app or current_app).extensions["sandbox"]

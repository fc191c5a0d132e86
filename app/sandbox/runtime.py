"""In-memory state of one sandbox app: clock offset, faults, the world lock, the pusher."""

import threading
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app


@dataclass
class Runtime:
    """What the sandbox keeps outside its database (reset with the world)."""

    clock_offset: float = 0.0
    # Per platform (component appid): endpoint name -> {"errcode", "latency", "times",
    # "http_status", "reset", "non_json", "timeout"} (see faults.py)
    endpoint_faults: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # Per platform: pause_tickets, duplicate, delay (seconds), out_of_order
    push_faults: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Per platform: the last release check's report
    last_release_check: dict[str, dict] = field(default_factory=dict)
    # Serializes writes to the world: SQLite and simple rules beat throughput here.
    lock: threading.RLock = field(default_factory=threading.RLock)
    pusher: Any = None
    ticket_thread: Any = None
    # Per platform: requests held by a `timeout` fault wait on its event; clearing the
    # platform's faults or a reset wakes them.
    hang_released: dict[str, threading.Event] = field(default_factory=dict)

    def endpoints_of(self, component_appid: str) -> dict[str, dict[str, Any]]:
        """The endpoint faults of one platform (a live dict)."""
        return self.endpoint_faults.setdefault(component_appid, {})

    def pushes_of(self, component_appid: str) -> dict[str, Any]:
        """The push faults of one platform (a live dict)."""
        return self.push_faults.setdefault(component_appid, {})

    def hang_event(self, component_appid: str) -> threading.Event:
        """What requests held by the platform's `timeout` faults wait on."""
        return self.hang_released.setdefault(component_appid, threading.Event())

    def release_hangs(self, component_appid: str | None = None) -> None:
        """Wake the requests held by one platform's (None: every platform's) timeout faults."""
        for appid in [component_appid] if component_appid else list(self.hang_released):
            self.hang_released.pop(appid, threading.Event()).set()

    def reset(self) -> None:
        """Forget clock travel, faults and the last release checks."""
        self.clock_offset = 0.0
        self.endpoint_faults.clear()
        self.push_faults.clear()
        self.last_release_check.clear()
        self.release_hangs()


def get(app: Flask | None = None) -> Runtime:
    """Return the runtime of `app` (default: the current app)."""
    return (app or current_app).extensions["sandbox"]

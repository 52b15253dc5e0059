"""Stop long work cleanly on SIGINT (Ctrl-C) or SIGTERM (a batch scheduler's time limit).

While `stop_on_signals()` is active, the first signal only records a request: the work loop
(`sciscore train`'s steps, `sciscore simulate`'s chunks of time steps) finishes the current unit,
saves its state and raises `KeyboardInterrupt` (the CLI exits with status 130), so no work is lost
and `--resume` continues bit-exactly. A second signal interrupts at once. Outside the main thread
(where handlers cannot be installed) nothing changes.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Set by the first SIGINT/SIGTERM; the work loop polls `requested` after each unit of work."""

    def __init__(self):
        self.signal: int | None = None

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def _handle(self, signum, frame):
        if self.signal is not None:
            raise KeyboardInterrupt  # a second signal: stop now
        self.signal = signum


@contextmanager
def stop_on_signals():
    """A `StopRequest` that SIGINT and SIGTERM set while the block runs (handlers restored after)."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {s: signal.signal(s, stop._handle) for s in SIGNALS}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)

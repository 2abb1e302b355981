"""Cost attribution: a replica costs its recipe's $/h whether busy or idle.

While requests are in flight, each interval's cost is split equally among the requests in
flight during it (time-sliced attribution: a request alone on a replica pays the whole
replica; one of eight concurrent requests pays an eighth). Idle intervals are charged to no
request but still counted (kind=idle), so total spend / accepted outcomes is the true cost
per accepted outcome.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CostMeter:
    def __init__(
        self,
        usd_per_hour: float,
        on_charge: Callable[[str, float], None],
        clock: Callable[[], float] = time.monotonic,
    ):
        self.usd_per_second = usd_per_hour / 3600.0
        self._on_charge = on_charge
        self._clock = clock
        self._lock = threading.Lock()
        self._last = clock()
        self._in_flight: dict[str, float] = {}

    def _advance(self) -> None:
        now = self._clock()
        usd = (now - self._last) * self.usd_per_second
        self._last = now
        if usd <= 0:
            return
        if self._in_flight:
            share = usd / len(self._in_flight)
            for key in self._in_flight:
                self._in_flight[key] += share
            self._on_charge("busy", usd)
        else:
            self._on_charge("idle", usd)

    def start(self, key: str) -> None:
        with self._lock:
            self._advance()
            self._in_flight[key] = 0.0

    def finish(self, key: str) -> float:
        """The request's attributed cost in USD."""
        with self._lock:
            self._advance()
            return self._in_flight.pop(key, 0.0)

    def tick(self) -> None:
        """Charge the time since the last event (call periodically so idle time is counted)."""
        with self._lock:
            self._advance()

"""Per-key rate limit: a token bucket shared by every worker process of the host.

`rate_limit_per_minute` holds per API key, however many gunicorn workers serve
it: the buckets live in the shared store (`var/runtime.db`, see
shared_store.py), updated in one short write transaction per request. It
protects the service from floods; the privacy budget, not this limit, bounds
what a partner can learn. If the store cannot be written, the request is let
through and the failure logged: a broken limiter must not stop the service.
"""
from __future__ import annotations

import logging
import math
import sqlite3
import time

from dpquery.http.shared_store import SharedStore

log = logging.getLogger("dpquery.http.ratelimit")


class RateLimiter:
    """`per_minute` requests per key, refilled continuously, bursts up to the same."""

    def __init__(self, store: SharedStore, per_minute: int, clock=time.time):
        self.store = store
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock

    def take(self, key: str) -> float:
        """Spend one token for `key`: 0.0 if allowed, else seconds until one is free."""
        if self.capacity <= 0:
            return 0.0
        try:
            with self.store.write() as db:
                return self._take(db, key)
        except sqlite3.Error:
            log.exception("rate limiter store %s failed; request let through", self.store.path)
            return 0.0

    def _take(self, db, key: str) -> float:
        now = self.clock()
        row = db.execute("SELECT tokens, at FROM rate_buckets WHERE key = ?", (key,)).fetchone()
        tokens, last = row if row else (self.capacity, now)
        tokens = min(self.capacity, tokens + max(0.0, now - last) * self.rate)
        wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate
        spent = 1.0 if wait == 0.0 else 0.0
        db.execute("INSERT OR REPLACE INTO rate_buckets (key, tokens, at) VALUES (?, ?, ?)",
                   (key, tokens - spent, now))
        return wait


def retry_after(seconds: float) -> int:
    """Whole seconds for a Retry-After header (at least 1)."""
    return max(1, math.ceil(seconds))

"""Per-key rate limit: an in-process token bucket.

The limit is per worker process: with N gunicorn workers a key may make up to
N x `rate_limit_per_minute` requests a minute in the worst case (requests are
spread over workers by the kernel). It protects the service from floods; the
privacy budget, not this limit, is what bounds what a partner can learn.
"""
from __future__ import annotations

import math
import threading
import time


class RateLimiter:
    """`per_minute` requests per key, refilled continuously, bursts up to the same."""

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one token for `key`: 0.0 if allowed, else seconds until one is free."""
        if self.capacity <= 0:
            return 0.0
        with self.lock:
            now = self.clock()
            tokens, last = self.buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self.buckets[key] = (tokens - 1.0, now)
                return 0.0
            self.buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate


def retry_after(seconds: float) -> int:
    """Whole seconds for a Retry-After header (at least 1)."""
    return max(1, math.ceil(seconds))

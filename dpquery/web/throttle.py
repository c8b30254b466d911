"""Sign-in throttling: failed attempts counted per client address and per key id.

After `login_failures_per_key` failures for one key id (the public `dpq_<id>`
part of a key), or `login_failures_per_ip` from one address, within
`login_lockout_seconds`, sign-ins from that address or for that key are
refused with 429 and Retry-After until the window ends. Successes do not reset
the counts (one valid key must not unlock guessing others). The counts live in
the workers' shared store, so every worker enforces the same limit. Behind a
reverse proxy every client has the proxy's address: raise the per-address limit.
"""
from __future__ import annotations

import math
import time

from dpquery.http.shared_store import SharedStore

KEY_ID_CHARS = 40


def scopes(address: str | None, key: str) -> dict[str, int]:
    """The counters an attempt touches: its address and its key id (when it has one)."""
    out = {f"ip:{address or '-'}": 0}
    role, _, rest = key.partition("_")
    key_id = rest.partition("_")[0]
    if key_id:
        out[f"key:{role}_{key_id}"[:KEY_ID_CHARS]] = 1
    return out


class LoginThrottle:
    def __init__(self, store: SharedStore, per_ip: int, per_key: int, window: float,
                 clock=time.time):
        self.store, self.limits, self.window, self.clock = store, (per_ip, per_key), window, clock

    def wait(self, counters: dict[str, int]) -> int:
        """Seconds until an attempt on these counters is allowed (0: now)."""
        now, longest = self.clock(), 0.0
        with self.store.write() as db:
            for scope, kind in counters.items():
                row = db.execute("SELECT failures, since FROM login_failures WHERE scope = ?",
                                 (scope,)).fetchone()
                if row and row[0] >= self.limits[kind] and now - row[1] < self.window:
                    longest = max(longest, row[1] + self.window - now)
        return math.ceil(longest)

    def failed(self, counters: dict[str, int]) -> None:
        now = self.clock()
        with self.store.write() as db:
            db.execute("DELETE FROM login_failures WHERE since < ?", (now - self.window,))
            for scope in counters:
                db.execute("INSERT INTO login_failures (scope, failures, since) VALUES (?, 1, ?) "
                           "ON CONFLICT(scope) DO UPDATE SET failures = failures + 1",
                           (scope, now))

"""The free tier's daily image quota, kept in SQLite so a restart does not reset it.

One row per (principal, day) in table ``usage``; a day is the calendar day at ``tz_offset_hours`` from UTC
(Korea: +9), so quotas reset at local midnight. :meth:`QuotaStore.charge` reads and writes in one
``BEGIN IMMEDIATE`` transaction, so several threads and processes sharing the file never overspend;
the database runs in WAL mode with a busy timeout. A render that fails after being charged is given back
with :meth:`QuotaStore.refund` (or use :meth:`QuotaStore.reserve`, which does both).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import sqlite3
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from fitad.serve.errors import ApiError

T = TypeVar("T")

__all__ = ["QuotaStore"]

_SCHEMA = ("CREATE TABLE IF NOT EXISTS usage (principal TEXT NOT NULL, day TEXT NOT NULL, "
           "count INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (principal, day))")


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class QuotaStore:
    """Daily counts per principal. ``clock`` (UTC now, aware) can be replaced in tests."""

    def __init__(self, path: str | os.PathLike, daily_limit: int, tz_offset_hours: int = 9, *,
                 busy_timeout_s: float = 30.0, clock: Callable[[], dt.datetime] = _utc_now) -> None:
        if daily_limit < 0:
            raise ValueError(f"daily_limit must be >= 0, got {daily_limit}")
        if not -12 <= tz_offset_hours <= 14:
            raise ValueError(f"tz_offset_hours must be between -12 and 14, got {tz_offset_hours}")
        self.path = Path(path)
        self.daily_limit = int(daily_limit)
        self.tz = dt.timezone(dt.timedelta(hours=tz_offset_hours))
        self.tz_offset_hours = tz_offset_hours
        self.busy_timeout_s = busy_timeout_s
        self.clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)

    # ---------------------------------------------------------------- plumbing

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A fresh connection per operation: safe from any thread and process, nothing shared between them."""
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            yield conn
        finally:
            conn.close()

    def _local_now(self) -> dt.datetime:
        return self.clock().astimezone(self.tz)

    def day(self) -> str:
        """Today's date (``YYYY-MM-DD``) at the store's UTC offset."""
        return self._local_now().date().isoformat()

    def seconds_to_reset(self) -> int:
        """Whole seconds (at least 1) until the next local midnight, when every count starts again."""
        now = self._local_now()
        midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), tzinfo=self.tz)
        return max(1, math.ceil((midnight - now).total_seconds()))

    @staticmethod
    def _count(conn: sqlite3.Connection, principal: str, day: str) -> int:
        row = conn.execute("SELECT count FROM usage WHERE principal = ? AND day = ?", (principal, day)).fetchone()
        return int(row[0]) if row else 0

    # ---------------------------------------------------------------- API

    def used(self, principal: str, day: str | None = None) -> int:
        with self._connect() as conn:
            return self._count(conn, principal, day or self.day())

    def remaining(self, principal: str) -> int:
        """Images ``principal`` may still render today."""
        return max(0, self.daily_limit - self.used(principal))

    def charge(self, principal: str, n: int = 1) -> int:
        """Count ``n`` images against today's quota and return what remains, or raise 429 ``quota_exceeded``
        (with ``Retry-After``: seconds until local midnight) without counting anything."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        day = self.day()
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                used = self._count(conn, principal, day)
                if used + n > self.daily_limit:
                    conn.execute("ROLLBACK")
                    raise self._exceeded(used, n)
                conn.execute("INSERT INTO usage (principal, day, count) VALUES (?, ?, ?) "
                             "ON CONFLICT (principal, day) DO UPDATE SET count = count + excluded.count",
                             (principal, day, n))
                conn.execute("COMMIT")
            except ApiError:
                raise
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return self.daily_limit - used - n

    def refund(self, principal: str, n: int = 1, day: str | None = None) -> int:
        """Give back ``n`` images charged on ``day`` (default today), never below zero; returns what remains."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        day = day or self.day()
        with self._connect() as conn:
            conn.execute("UPDATE usage SET count = MAX(0, count - ?) WHERE principal = ? AND day = ?",
                         (n, principal, day))
            return max(0, self.daily_limit - self._count(conn, principal, day))

    @contextlib.contextmanager
    def reserve(self, principal: str, n: int = 1) -> Iterator[int]:
        """Charge ``n`` images for the block; refund them (to the day they were charged) if the block raises.
        Yields the images remaining after the charge."""
        day = self.day()
        remaining = self.charge(principal, n)
        try:
            yield remaining
        except BaseException:
            self.refund(principal, n, day=day)
            raise

    def _exceeded(self, used: int, n: int) -> ApiError:
        wait = self.seconds_to_reset()
        hours, minutes = wait // 3600, (wait % 3600) // 60
        sign = "+" if self.tz_offset_hours >= 0 else "-"
        left = max(0, self.daily_limit - used)
        asked = f"{n} images" if n > 1 else "an image"
        what = (f"the free tier's daily quota of {self.daily_limit} image{'s' if self.daily_limit != 1 else ''} "
                f"is used up" if left == 0 else f"{asked} would exceed the free tier's daily quota ({left} left)")
        return ApiError(429, "quota_exceeded",
                        f"{what}; it resets at midnight (UTC{sign}{abs(self.tz_offset_hours)}), in {hours} h "
                        f"{minutes} min. A paid key has no daily limit.",
                        headers={"Retry-After": str(wait)})

    def charged(self, principal: Any, render: Callable[[], T]) -> T:
        """Run ``render`` for ``principal`` (an auth Principal): the free tier pays one image from its daily quota,
        refunded if the render fails; paid tiers do not count."""
        if getattr(principal, "tier", "free") != "free":
            return render()
        with self.reserve(principal.quota_id):
            return render()

    def status(self, principal: Any) -> dict[str, Any]:
        """What ``/quota`` answers: the tier, and for the free tier the images left today and the daily limit."""
        free = getattr(principal, "tier", "free") == "free"
        return {"tier": principal.tier, "remaining": self.remaining(principal.quota_id) if free else None,
                "daily_limit": self.daily_limit if free else None}

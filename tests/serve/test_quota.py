"""Daily quota in SQLite: counts survive a restart, no overspend from threads or processes, local midnight."""

from __future__ import annotations

import datetime as dt
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from fitad.serve.errors import ApiError
from fitad.serve.quota import QuotaStore

UTC = dt.timezone.utc


class Clock:
    def __init__(self, when: dt.datetime) -> None:
        self.when = when

    def __call__(self) -> dt.datetime:
        return self.when


def test_charge_until_exhausted_then_429(tmp_path):
    store = QuotaStore(tmp_path / "q.sqlite3", daily_limit=3)
    assert store.remaining("anon:1.2.3.4") == 3
    assert [store.charge("anon:1.2.3.4") for _ in range(3)] == [2, 1, 0]
    with pytest.raises(ApiError) as info:
        store.charge("anon:1.2.3.4")
    err = info.value
    assert (err.status, err.code) == (429, "quota_exceeded")
    assert "3 images" in err.message and "midnight" in err.message
    assert 1 <= int(err.headers["Retry-After"]) <= 86_400
    assert store.used("anon:1.2.3.4") == 3                   # the refused charge counted nothing
    assert store.remaining("anon:5.6.7.8") == 3              # per principal


def test_counts_survive_a_restart(tmp_path):
    path = tmp_path / "nested" / "q.sqlite3"
    first = QuotaStore(path, daily_limit=3)
    first.charge("key:shop", 2)
    del first
    second = QuotaStore(path, daily_limit=3)                  # a new process would see the same file
    assert second.remaining("key:shop") == 1
    assert second.charge("key:shop") == 0
    with pytest.raises(ApiError):
        QuotaStore(path, daily_limit=3).charge("key:shop")
    rows = sqlite3.connect(path).execute("SELECT principal, count FROM usage").fetchall()
    assert rows == [("key:shop", 3)]


def test_wal_mode_and_schema(tmp_path):
    path = tmp_path / "q.sqlite3"
    QuotaStore(path, daily_limit=1)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cols = [(r[1], r[2], r[5]) for r in conn.execute("PRAGMA table_info(usage)")]
    assert cols == [("principal", "TEXT", 1), ("day", "TEXT", 2), ("count", "INTEGER", 0)]


def test_charging_more_than_left_is_refused_whole(tmp_path):
    store = QuotaStore(tmp_path / "q.sqlite3", daily_limit=3)
    store.charge("p")
    with pytest.raises(ApiError) as info:
        store.charge("p", 3)
    assert "2 left" in info.value.message
    assert store.charge("p", 2) == 0


def test_refund_and_reserve(tmp_path):
    store = QuotaStore(tmp_path / "q.sqlite3", daily_limit=3)
    store.charge("p", 2)
    assert store.refund("p") == 2
    assert store.refund("p", 5) == 3                          # never below zero
    with pytest.raises(RuntimeError):
        with store.reserve("p", 2) as left:
            assert left == 1 and store.remaining("p") == 1
            raise RuntimeError("render failed")
    assert store.remaining("p") == 3                          # refunded
    with store.reserve("p") as left:
        assert left == 2
    assert store.remaining("p") == 2                          # kept on success


def test_day_is_the_local_calendar_day_and_retry_after_is_local_midnight(tmp_path):
    # 14:30 UTC = 23:30 in Korea (UTC+9): 30 minutes to the reset
    clock = Clock(dt.datetime(2025, 3, 1, 14, 30, tzinfo=UTC))
    store = QuotaStore(tmp_path / "q.sqlite3", daily_limit=1, tz_offset_hours=9, clock=clock)
    assert store.day() == "2025-03-01"
    store.charge("p")
    with pytest.raises(ApiError) as info:
        store.charge("p")
    assert info.value.headers["Retry-After"] == str(30 * 60)
    assert "UTC+9" in info.value.message
    clock.when = dt.datetime(2025, 3, 1, 15, 0, 1, tzinfo=UTC)  # 00:00:01 on 2 March in Korea
    assert store.day() == "2025-03-02" and store.remaining("p") == 1
    assert store.charge("p") == 0
    # in UTC the same instant is still 1 March
    assert QuotaStore(tmp_path / "q.sqlite3", 1, tz_offset_hours=0, clock=clock).day() == "2025-03-01"


def test_refund_goes_to_the_day_charged_across_midnight(tmp_path):
    clock = Clock(dt.datetime(2025, 3, 1, 14, 59, 59, tzinfo=UTC))   # 23:59:59 KST
    store = QuotaStore(tmp_path / "q.sqlite3", daily_limit=2, clock=clock)
    with pytest.raises(ValueError):
        with store.reserve("p"):
            clock.when += dt.timedelta(seconds=2)                     # the render ends after midnight
            raise ValueError("failed")
    assert store.used("p", "2025-03-01") == 0 and store.used("p", "2025-03-02") == 0


def test_zero_limit_refuses_everything(tmp_path):
    with pytest.raises(ApiError):
        QuotaStore(tmp_path / "q.sqlite3", daily_limit=0).charge("p")


def test_eight_threads_never_overspend(tmp_path):
    path = tmp_path / "q.sqlite3"
    limit = 25
    stores = [QuotaStore(path, daily_limit=limit) for _ in range(8)]
    granted, refused, errors = [], [], []
    barrier = threading.Barrier(8)

    def worker(store: QuotaStore) -> None:
        barrier.wait()
        for _ in range(10):
            try:
                granted.append(store.charge("shared"))
            except ApiError as exc:
                refused.append(exc.code)
            except Exception as exc:  # a locked database would show up here
                errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(granted) == limit and len(refused) == 80 - limit
    assert sorted(granted) == list(range(limit))               # each "remaining" value handed out exactly once
    assert set(refused) == {"quota_exceeded"}
    assert QuotaStore(path, daily_limit=limit).used("shared") == limit


def test_two_processes_never_overspend(tmp_path):
    path = tmp_path / "q.sqlite3"
    QuotaStore(path, daily_limit=30)
    src = Path(__file__).resolve().parents[2] / "src"
    code = (
        "import sys; sys.path.insert(0, sys.argv[2])\n"
        "from fitad.serve.quota import QuotaStore\n"
        "from fitad.serve.errors import ApiError\n"
        "s = QuotaStore(sys.argv[1], daily_limit=30)\n"
        "ok = 0\n"
        "for _ in range(25):\n"
        "    try:\n"
        "        s.charge('shared'); ok += 1\n"
        "    except ApiError:\n"
        "        pass\n"
        "print(ok)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path), str(src)], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(int(o) for o in outs) == 30                     # 50 attempts, exactly the limit granted
    assert QuotaStore(path, daily_limit=30).used("shared") == 30

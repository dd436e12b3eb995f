"""Admission and long jobs: the bounded queue in front of the renderer, and job states with live progress.

:class:`AdmissionGate` lets at most one running plus ``max_queue`` waiting requests in (a counter under a lock:
the check never blocks); the next one is refused at once with 429 ``busy`` and ``Retry-After``. The
renderer's own lock then serves the admitted ones one at a time.

The service's task endpoints (submit -> status -> result) create a job, run the render with
``AdServiceCore.progress_callback(job_id)`` as its progress function, and mark it finished or failed.
Status reads ``{"state", "stage", "step", "total", "elapsed_s", "error"}``; state moves
``queued -> running -> done | failed`` (running from the first denoising step).

The board is thread-safe, bounded (the oldest finished jobs go first when it is full) and forgets
finished jobs ``ttl_s`` after they ended. It lives in one worker's memory: a job is only known to the
worker that runs it, as BentoML tasks are.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
import uuid
from typing import Any, Callable, Iterator

from fitad.serve.errors import ApiError

__all__ = ["AdmissionGate", "JobBoard", "QUEUED", "RUNNING", "DONE", "FAILED"]

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
_ENDED = (DONE, FAILED)
_ANYONE = object()  # the service itself (progress, finish, fail): no owner check


@dataclasses.dataclass
class _Job:
    job_id: str
    created: float
    state: str = QUEUED
    stage: str | None = None
    step: int = 0
    total: int = 0
    started: float | None = None
    ended: float | None = None
    error: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    owner: str | None = None            # who may read it (a caller's quota id); None: anyone


class JobBoard:
    """Job states by id: ``create``, ``progress``, ``finish``, ``fail``, ``get``; unknown ids are a 404."""

    def __init__(self, ttl_s: float = 3600.0, max_jobs: int = 1000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_s <= 0 or max_jobs < 1:
            raise ValueError("JobBoard: ttl_s must be > 0 and max_jobs >= 1")
        self.ttl_s = float(ttl_s)
        self.max_jobs = int(max_jobs)
        self._clock = clock
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}   # insertion order = creation order

    # ---- writing
    def create(self, job_id: str | None = None, owner: str | None = None) -> str:
        """A new queued job; returns its id (32 hex characters, or ``job_id``: e.g. a BentoML task id or a caller's
        ``X-Fitad-Job``). An id still in use by an unfinished job is refused (409), so one caller cannot take over
        another's job; ``owner`` set, only ``get(..., owner=the same)`` sees it."""
        with self._lock:
            self._cleanup_locked()
            live = self._jobs.get(job_id) if job_id else None
            if live is not None and live.state not in _ENDED:
                raise ApiError(409, "conflict", f"job id {job_id!r} is in use by a job still running; use a new id",
                               "job_id")
            if live is not None:
                del self._jobs[job_id]  # an ended job of the same id is replaced (and re-ordered)
            while len(self._jobs) >= self.max_jobs:
                ended = next((k for k, j in self._jobs.items() if j.state in _ENDED), None)
                # all jobs still running: the oldest (most likely abandoned) makes room
                self._jobs.pop(ended if ended is not None else next(iter(self._jobs)))
            job_id = job_id or uuid.uuid4().hex
            self._jobs[job_id] = _Job(job_id, self._clock(), owner=owner)
            return job_id

    def progress(self, job_id: str, stage: str, step: int, total: int) -> None:
        """Step ``step`` of ``total`` in ``stage`` done; the job is running from its first report."""
        with self._lock:
            job = self._get_locked(job_id)
            if job.state in _ENDED:
                return
            if job.state == QUEUED:
                job.state, job.started = RUNNING, self._clock()
            job.stage, job.step, job.total = str(stage), int(step), int(total)

    def start(self, job_id: str, stage: str | None = None) -> None:
        """Mark the job running before its first step (e.g. while the adapter loads)."""
        with self._lock:
            job = self._get_locked(job_id)
            if job.state == QUEUED:
                job.state, job.started = RUNNING, self._clock()
                job.stage = stage if stage is not None else job.stage

    def finish(self, job_id: str, result_meta: dict[str, Any] | None = None) -> None:
        with self._lock:
            job = self._get_locked(job_id)
            job.state, job.ended, job.result = DONE, self._clock(), result_meta
            if job.started is None:
                job.started = job.ended
            if job.total:
                job.step = job.total

    def fail(self, job_id: str, error: ApiError | BaseException | str) -> None:
        with self._lock:
            job = self._get_locked(job_id)
            job.state, job.ended = FAILED, self._clock()
            if isinstance(error, ApiError):
                job.error = {"status": error.status, "code": error.code, "message": error.message,
                             "field": error.field}
            else:
                job.error = {"status": 500, "code": "internal", "message": str(error) or type(error).__name__,
                             "field": None}

    # ---- reading
    def get(self, job_id: str, owner: str | None = None) -> dict[str, Any]:
        """``{"job_id", "state", "stage", "step", "total", "elapsed_s", "error", "result"}``; a job with an owner
        is unknown (404) to anyone else."""
        with self._lock:
            self._cleanup_locked()
            job = self._get_locked(job_id, reader=owner)
            end = job.ended if job.ended is not None else self._clock()
            return {"job_id": job.job_id, "state": job.state, "stage": job.stage, "step": job.step,
                    "total": job.total, "elapsed_s": round(end - job.created, 3), "error": job.error,
                    "result": job.result}

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)

    def cleanup(self) -> int:
        """Forget jobs that ended more than ``ttl_s`` ago (and any job older than ``2 * ttl_s``)."""
        with self._lock:
            return self._cleanup_locked()

    # ---- internals
    def _cleanup_locked(self) -> int:
        now = self._clock()
        stale = [k for k, j in self._jobs.items()
                 if (j.ended is not None and now - j.ended > self.ttl_s) or now - j.created > 2 * self.ttl_s]
        for key in stale:
            del self._jobs[key]
        return len(stale)

    def _get_locked(self, job_id: str, reader: Any = _ANYONE) -> _Job:
        job = self._jobs.get(job_id) if isinstance(job_id, str) else None
        if job is not None and reader is not _ANYONE and job.owner is not None and job.owner != reader:
            job = None  # someone else's job: unknown to this reader
        if job is None:
            shown = job_id if isinstance(job_id, str) and len(job_id) <= 64 and job_id.isprintable() else "?"
            raise ApiError(404, "not_found", f"job_id: no job {shown!r} (unknown, or finished more than "
                           f"{self.ttl_s:g} s ago)", "job_id")
        return job


class AdmissionGate:
    """At most ``running + max_queue`` requests inside; the next one is a 429 ``busy`` at once."""

    def __init__(self, max_queue: int, retry_after_s: int, running: int = 1) -> None:
        self.capacity = int(running) + int(max_queue)
        self.running = int(running)
        self.retry_after_s = int(retry_after_s)
        self._lock = threading.Lock()
        self._inside = 0
        self.refused = 0

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        with self._lock:
            if self._inside >= self.capacity:
                self.refused += 1
                raise ApiError(429, "busy", f"the service is busy ({self.running} generation running, "
                               f"{self.capacity - self.running} waiting); retry in {self.retry_after_s} s",
                               headers={"Retry-After": str(self.retry_after_s)})
            self._inside += 1
        try:
            yield
        finally:
            with self._lock:
                self._inside -= 1

    def stats(self) -> dict[str, int]:
        with self._lock:
            inside = self._inside
        return {"inside": inside, "running": min(inside, self.running),
                "waiting": max(0, inside - self.running), "capacity": self.capacity, "refused": self.refused}

"""Engine work off the event loop: a bounded queue of jobs drained by one worker thread that
batches compatible jobs (same engine and options) up to a maximum size and wait.

The gRPC handlers (on the asyncio loop) submit :class:`Job`s and read their events from an
``asyncio.Queue``; the worker thread posts progress, results and errors back through the job's loop.
A job whose caller went away (cancelled call, expired deadline) is skipped if it has not started,
and stops at the engine's next progress callback if it has.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from dataclasses import dataclass, field, replace

import numpy as np

from topos_sdk import ToposError
from topos_server.engines.base import Engine, GenerateOptions

log = logging.getLogger("topos.server")


class QueueFull(ToposError):
    """The bounded queue holds ``max_queue`` waiting jobs already."""


class JobCancelled(Exception):
    """Raised from the progress callback to stop an engine whose callers all went away."""


@dataclass(eq=False)
class Job:
    request_id: str
    engine_name: str
    image: bytes | np.ndarray  # encoded bytes or (H, W, 3) uint8 RGB
    options: GenerateOptions
    loop: asyncio.AbstractEventLoop
    deadline: float | None = None  # time.monotonic() seconds
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    enqueued_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None

    # events posted: ("progress", stage, fraction) | ("result", HeadResult) | ("error", exception)
    def post(self, *event) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the loop closed: nobody is listening any more
            pass

    @property
    def abandoned(self) -> bool:
        return self.cancelled.is_set() or (self.deadline is not None and time.monotonic() > self.deadline)

    @property
    def batch_key(self) -> tuple:
        return self.engine_name, self.options


class BatchingWorker:
    """One thread running ``engines[name].generate`` on batches of queued jobs."""

    def __init__(self, engines: dict[str, Engine], max_batch: int = 1, max_queue: int = 16,
                 max_wait_s: float = 0.01, metrics=None):
        if max_batch < 1 or max_queue < 1:
            raise ValueError("max_batch and max_queue must be at least 1")
        self.engines = engines
        self.max_batch, self.max_queue, self.max_wait_s = max_batch, max_queue, max_wait_s
        self.metrics = metrics
        self._pending: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="topos-engine-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def batch_limit(self, engine_name: str) -> int:
        return max(1, min(self.max_batch, int(getattr(self.engines[engine_name], "max_batch_size", 1))))

    @property
    def depth(self) -> int:
        return len(self._pending)

    def submit(self, job: Job) -> int:
        """Queue ``job``; returns how many jobs wait ahead of it. Raises QueueFull."""
        with self._cond:
            if self._stopping:
                raise QueueFull("the server is shutting down")
            if len(self._pending) >= self.max_queue:
                raise QueueFull(f"the server's queue is full ({self.max_queue} requests waiting); retry later")
            position = len(self._pending)
            self._pending.append(job)
            self._cond.notify()
        self._set_depth()
        return position

    def close(self, timeout: float | None = None) -> None:
        """Finish the queued jobs, then stop the thread (waits up to ``timeout`` seconds)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # ---- worker thread ---------------------------------------------------------------------
    def _set_depth(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(len(self._pending))

    def _batch_key(self, job: Job) -> tuple:
        """Jobs with equal keys share an engine call; an engine that takes one seed per image
        (``seed_per_image``) batches requests whatever their seeds."""
        if getattr(self.engines[job.engine_name], "seed_per_image", False):
            return job.engine_name, replace(job.options, seed=0)
        return job.batch_key

    def _next_batch(self) -> list[Job] | None:
        with self._cond:
            while not self._pending:
                if self._stopping:
                    return None
                self._cond.wait()
            first = self._pending.popleft()
            batch = [first]
            limit = self.batch_limit(first.engine_name)
            wait_until = time.monotonic() + self.max_wait_s
            while len(batch) < limit:
                key = self._batch_key(first)
                for job in [j for j in self._pending if self._batch_key(j) == key][:limit - len(batch)]:
                    self._pending.remove(job)
                    batch.append(job)
                remaining = wait_until - time.monotonic()
                if len(batch) >= limit or remaining <= 0 or self._stopping:
                    break
                self._cond.wait(remaining)
        self._set_depth()
        return batch

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            live = []
            for job in batch:
                if job.abandoned:
                    log.info("rid=%s skipped: the caller went away while it was queued", job.request_id)
                    job.post("error", JobCancelled("cancelled before it started"))
                else:
                    live.append(job)
            if live:
                self._generate(live)

    def _generate(self, jobs: list[Job], allow_split: bool = True) -> None:
        engine = self.engines[jobs[0].engine_name]
        started = time.monotonic()
        for job in jobs:
            job.started_at = started

        def progress(stage: str, fraction: float, index: int | None = None) -> None:
            for job in jobs if index is None else jobs[index:index + 1]:
                job.post("progress", str(stage), float(fraction))
            if all(job.abandoned for job in jobs):
                raise JobCancelled(f"stopped at {stage!r}: the caller went away")

        ids = ",".join(j.request_id for j in jobs)
        if self.metrics is not None:
            self.metrics.batch_size.observe(len(jobs))
        log.info("rid=%s engine=%s batch=%d started", ids, engine.name, len(jobs))
        try:
            if getattr(engine, "seed_per_image", False):
                results = engine.generate([j.image for j in jobs], jobs[0].options, progress,
                                          seeds=[int(j.options.seed) for j in jobs])
            else:
                results = engine.generate([j.image for j in jobs], jobs[0].options, progress)
            if len(results) != len(jobs):
                raise RuntimeError(f"engine {engine.name} returned {len(results)} results for {len(jobs)} images")
        except JobCancelled as exc:
            log.info("rid=%s %s", ids, exc)
            for job in jobs:
                job.post("error", exc)
        except ToposError as exc:
            if len(jobs) > 1 and allow_split:  # one bad image must not fail its batch-mates
                for job in jobs:
                    self._generate([job], allow_split=False)
                return
            for job in jobs:
                job.post("error", exc)
        except Exception as exc:  # an engine bug: report INTERNAL, keep serving
            log.exception("rid=%s engine %s failed", ids, engine.name)
            for job in jobs:
                job.post("error", exc)
        else:
            log.info("rid=%s engine=%s batch=%d finished in %.3f s", ids, engine.name, len(jobs),
                     time.monotonic() - started)
            for job, result in zip(jobs, results):
                job.post("result", result)

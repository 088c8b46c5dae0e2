"""Adaptive batching of ECG windows across the concurrent requests of one service worker, on its model thread.

Every endpoint that embeds ECGs (``embed``, ``zero_shot``, ``score_files``, ``encode`` and their ``.npy``
twins) hands its checked, preprocessed windows to one :class:`WindowBatcher`: one queue per worker, one
forward pass at a time, each taking the windows queued meanwhile (up to ``max_batch_size``). Why not
BentoML's ``batchable=True``: from another endpoint of the same (main) service it is reached through
BentoML's self-client, which sends arrays as JSON lists (its binary pickle format is refused on the main
server); for a 10 s ECG that costs more than the esi_cpu forward pass itself.

Every torch call of the worker runs on the batcher's one thread (:meth:`WindowBatcher.run`, text embeddings
and captions included): torch's OpenMP runtime keeps a thread team per calling thread, and allocations made
by many threads spread over many malloc arenas, so a model called from a pool of request threads grows the
worker's memory with every thread that ever touched it.

Adaptive: when the model is free, the batcher waits only while more windows are on their way: requests
inside an endpoint but not queued yet (announced with :meth:`WindowBatcher.expecting`), fewer queued
requests than were in the service together lately (callers served by the last batch come back), or an
arrival within the last few milliseconds; never longer than half the last forward pass, nor
``max_latency_ms``; and no longer than until half of the requests lately in the service are queued. A lone
client is therefore served at once, while many concurrent clients alternate in two halves: one half is in the
forward pass while the other is read and preprocessed (waiting for all of them left the model idle for that
time, about a third of the wall time under 64 closed-loop clients on 2 cores). A request whose windows waited
longer than ``max_latency_ms`` before their forward started is refused with :class:`Overloaded` (HTTP 503), as
BentoML's dispatcher does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from esi.errors import ServingError

_GAP_S = 0.002  # nothing expected and nothing queued for this long: the batch is released
_PEAK_WINDOW_S = 2.0  # how long the number of requests seen together is remembered (plus two forwards)


class Overloaded(ServingError):
    """The service is too busy to start a request's forward within max_latency_ms (HTTP 503)."""


@dataclass
class _Job:
    windows: np.ndarray
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)


@dataclass
class BatchStats:
    """What the batcher did so far (reported by the service's ``info``)."""

    batches: int = 0
    windows: int = 0
    largest: int = 0
    refused: int = 0
    last_forward_s: float = 0.0
    recent: deque = field(default_factory=lambda: deque(maxlen=16))  # sizes of the last batches

    def to_dict(self) -> dict[str, Any]:
        mean = self.windows / self.batches if self.batches else 0.0
        return {"batches": self.batches, "windows": self.windows, "largest_batch": self.largest,
                "mean_batch": round(mean, 2), "refused": self.refused,
                "last_forward_ms": round(self.last_forward_s * 1000, 1), "recent_batches": list(self.recent)}


class WindowBatcher:
    """Embed (n, 12, n_samples) windows of concurrent callers in shared forward passes.

    Args:
        forward: windows (k, 12, n_samples) -> (k, D) embeddings; runs on the batcher's own thread.
        max_batch_size: most windows in one forward (a request with more runs alone, chunked by ``forward``).
        max_latency_ms: longest a request may wait in the queue before its forward starts.
        observe: called with each batch's size (e.g. a Prometheus histogram's ``observe``).
    """

    def __init__(self, forward: Callable[[np.ndarray], np.ndarray], *, max_batch_size: int,
                 max_latency_ms: float, observe: Callable[[int], Any] | None = None) -> None:
        self._forward = forward
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_latency_s = float(max_latency_ms) / 1000.0
        self._observe = observe
        self._queue: deque[_Job] = deque()
        self._incoming = 0  # requests being read / preprocessed, whose windows will be queued soon
        self._running = 0  # requests in the forward pass under way
        self._peak, self._peak_at = 0, 0.0  # most requests in the service together, lately
        self._last_arrival = 0.0
        self._task: asyncio.Task | None = None
        # one thread: forwards never overlap (on CPU they would only fight over the cores torch already uses)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="esi-model")
        self.stats = BatchStats()

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the model thread (text embeddings, captions: any other torch call)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def run_sync(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the model thread, from outside the event loop (service start)."""
        return self._executor.submit(fn, *args).result()

    @contextlib.contextmanager
    def expecting(self):
        """Announce windows on their way (wrap a request's reading and preprocessing): batches wait for them."""
        self._incoming += 1
        self._note_active()
        try:
            yield
        finally:
            self._incoming -= 1

    async def embed(self, windows: np.ndarray) -> np.ndarray:
        """The (n, D) embeddings of ``windows``, computed in a batch shared with concurrent callers."""
        if len(windows) == 0:
            return await self.run(self._forward, windows)
        loop = asyncio.get_running_loop()
        job = _Job(windows, loop.create_future())
        self._queue.append(job)
        self._last_arrival = job.enqueued
        self._note_active()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._run())
        return await job.future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            await self._gather()
            jobs = self._take()
            if not jobs:
                continue
            windows = jobs[0].windows if len(jobs) == 1 else np.concatenate([j.windows for j in jobs])
            t0 = time.monotonic()
            self._running = len(jobs)
            try:
                out = await loop.run_in_executor(self._executor, self._forward, windows)
            except Exception as exc:  # the callers see the error; the batcher keeps serving
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            finally:
                self._running = 0
            self._record(len(windows), time.monotonic() - t0)
            k = 0
            for job in jobs:
                n = len(job.windows)
                if not job.future.done():  # a caller that went away (client disconnect) is skipped
                    job.future.set_result(out[k:k + n])
                k += n

    async def _gather(self) -> None:
        """Wait while windows are on their way, at most half the last forward (and max_latency), and only until
        half of the requests lately in the service are queued: the other half is read and preprocessed while
        this batch runs, so the model does not idle between batches of returning callers."""
        budget = min(self.max_latency_s, 0.5 * self.stats.last_forward_s)
        start = time.monotonic()
        while self._rows() < self.max_batch_size:
            now = time.monotonic()
            peak = self._recent_peak(now)
            if self._queue and 2 * len(self._queue) >= peak:
                return
            coming = self._incoming > 0 or len(self._queue) < peak
            if now - start >= budget or (not coming and now - self._last_arrival >= _GAP_S):
                return
            await asyncio.sleep(min(_GAP_S, max(budget - (now - start), 0.0)))

    def _note_active(self) -> None:
        now = time.monotonic()
        active = self._incoming + len(self._queue) + self._running
        if active >= self._recent_peak(now):
            self._peak, self._peak_at = active, now

    def _recent_peak(self, now: float) -> int:
        if now - self._peak_at > _PEAK_WINDOW_S + 2 * self.stats.last_forward_s:
            self._peak = 0
        return self._peak

    def _rows(self) -> int:
        return sum(len(j.windows) for j in self._queue)

    def _take(self) -> list[_Job]:
        """Queued jobs, oldest first, up to max_batch_size windows (at least one job); stale ones refused."""
        now, jobs, rows = time.monotonic(), [], 0
        while self._queue:
            job = self._queue[0]
            if job.future.done():
                self._queue.popleft()
                continue
            if now - job.enqueued > self.max_latency_s:
                self._queue.popleft()
                self.stats.refused += 1
                job.future.set_exception(Overloaded(
                    f"the service is overloaded: the request waited {now - job.enqueued:.1f} s for the model "
                    f"(limit {self.max_latency_s * 1000:g} ms, ESI_SERVE_MAX_LATENCY_MS); retry later or add workers"))
                continue
            if jobs and rows + len(job.windows) > self.max_batch_size:
                break
            jobs.append(self._queue.popleft())
            rows += len(job.windows)
        return jobs

    def _record(self, n: int, seconds: float) -> None:
        s = self.stats
        s.batches, s.windows, s.largest, s.last_forward_s = s.batches + 1, s.windows + n, max(s.largest, n), seconds
        s.recent.append(n)
        if self._observe is not None:
            self._observe(n)

    def close(self) -> None:
        """Stop the forward thread (pending forwards finish first)."""
        self._executor.shutdown(wait=True)

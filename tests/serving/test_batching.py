"""The service's adaptive batcher: shared forward passes, each caller its own rows, bounded batches and waits."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from esi.serving.batching import Overloaded, WindowBatcher


class Model:
    """A stand-in forward: row i of the output is (first sample of window i, batch size); records batches."""

    def __init__(self, seconds: float = 0.02, fail_on: float | None = None) -> None:
        self.seconds, self.fail_on = seconds, fail_on
        self.batches: list[int] = []
        self.threads: set[str] = set()

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        self.threads.add(threading.current_thread().name)
        self.batches.append(len(windows))
        time.sleep(self.seconds)
        if self.fail_on is not None and np.any(windows[:, 0, 0] == self.fail_on):
            raise RuntimeError("forward failed")
        return np.stack([windows[:, 0, 0], np.full(len(windows), len(windows), np.float32)], axis=1)


def windows(*values: float) -> np.ndarray:
    return np.stack([np.full((12, 8), v, np.float32) for v in values])


async def clients(batcher: WindowBatcher, jobs: list[np.ndarray], prepare_s: float = 0.0) -> list:
    async def one(w: np.ndarray):
        with batcher.expecting():
            await asyncio.sleep(prepare_s)
        return await batcher.embed(w)

    return await asyncio.gather(*(one(w) for w in jobs), return_exceptions=True)


def test_concurrent_callers_share_forwards_and_get_their_own_rows() -> None:
    model = Model()
    batcher = WindowBatcher(model, max_batch_size=64, max_latency_ms=10_000)
    jobs = [windows(i) for i in range(20)] + [windows(100, 101, 102)]
    out = asyncio.run(clients(batcher, jobs, prepare_s=0.01))
    for job, got in zip(jobs, out, strict=True):
        np.testing.assert_array_equal(got[:, 0], job[:, 0, 0])  # each caller gets exactly its windows' rows
    assert sum(model.batches) == 23 and len(model.batches) < 5, model.batches
    assert batcher.stats.largest == max(model.batches) > 10 and batcher.stats.windows == 23
    assert model.threads == {"esi-model_0"}  # every forward on the one model thread


def test_batches_never_exceed_max_batch_size_unless_one_request_is_larger() -> None:
    model = Model()
    batcher = WindowBatcher(model, max_batch_size=4, max_latency_ms=10_000)
    out = asyncio.run(clients(batcher, [windows(i) for i in range(10)] + [windows(*range(50, 56))]))
    assert not any(isinstance(o, Exception) for o in out)
    assert sum(model.batches) == 16 and max(model.batches) == 6 and sorted(model.batches)[-2] <= 4


def test_a_failing_forward_fails_its_callers_and_the_batcher_keeps_serving() -> None:
    batcher = WindowBatcher(Model(fail_on=7.0), max_batch_size=64, max_latency_ms=10_000)

    async def scenario():
        bad = await clients(batcher, [windows(7), windows(8)])
        good = await batcher.embed(windows(9))
        return bad, good

    bad, good = asyncio.run(scenario())
    assert all(isinstance(b, RuntimeError) for b in bad)  # the two shared one batch
    assert good[0, 0] == 9.0


def test_a_caller_that_went_away_is_skipped() -> None:
    model = Model(seconds=0.05)
    batcher = WindowBatcher(model, max_batch_size=64, max_latency_ms=10_000)

    async def scenario():
        first = asyncio.ensure_future(batcher.embed(windows(1)))  # occupies the model
        await asyncio.sleep(0.01)
        gone = asyncio.ensure_future(batcher.embed(windows(2)))
        kept = asyncio.ensure_future(batcher.embed(windows(3)))
        await asyncio.sleep(0)
        gone.cancel()
        return await first, await kept, gone.cancelled()

    first, kept, cancelled = asyncio.run(scenario())
    assert first[0, 0] == 1.0 and kept[0, 0] == 3.0 and cancelled
    assert model.batches == [1, 1]  # the cancelled window never reached the model


def test_requests_that_waited_past_max_latency_get_overloaded() -> None:
    batcher = WindowBatcher(Model(seconds=0.3), max_batch_size=1, max_latency_ms=100)
    out = asyncio.run(clients(batcher, [windows(i) for i in range(3)]))
    assert not isinstance(out[0], Exception)
    assert all(isinstance(o, Overloaded) and "ESI_SERVE_MAX_LATENCY_MS" in str(o) for o in out[1:])
    assert batcher.stats.refused == 2


def test_a_lone_caller_is_not_held_back() -> None:
    batcher = WindowBatcher(Model(seconds=0.4), max_batch_size=64, max_latency_ms=10_000)

    async def scenario() -> float:
        await batcher.embed(windows(0))  # the last forward took 0.4 s: a batch may wait up to 0.2 s for more
        t0 = time.monotonic()
        await batcher.embed(windows(1))
        return time.monotonic() - t0

    # nothing else is expected (no request inside an endpoint, none seen together lately): no wait
    assert asyncio.run(scenario()) < 0.4 + 0.15


def test_other_model_calls_run_on_the_model_thread() -> None:
    batcher = WindowBatcher(Model(), max_batch_size=8, max_latency_ms=1000)
    name = asyncio.run(batcher.run(lambda: threading.current_thread().name))
    assert name == batcher.run_sync(lambda: threading.current_thread().name) == "esi-model_0"
    empty = asyncio.run(batcher.embed(np.zeros((0, 12, 8), np.float32)))
    assert empty.shape == (0, 2)
    batcher.close()
    with pytest.raises(RuntimeError):
        batcher.run_sync(lambda: None)


def test_a_batch_starts_once_half_the_callers_are_queued() -> None:
    """Callers still preprocessing are not waited for once half of those in the service are queued: they are
    prepared while the first half runs (waiting for everyone left the model idle between batches)."""
    model = Model(seconds=0.4)
    batcher = WindowBatcher(model, max_batch_size=64, max_latency_ms=10_000)

    async def scenario():
        await batcher.embed(windows(-1))  # last forward 0.4 s: a batch may wait up to 0.2 s for more windows

        async def one(i: int):
            with batcher.expecting():
                await asyncio.sleep(0.01 if i < 4 else 0.12)  # four quick, four slow to preprocess
            return await batcher.embed(windows(i))

        return await asyncio.gather(*(one(i) for i in range(8)))

    out = asyncio.run(scenario())
    assert [int(o[0, 0]) for o in out] == list(range(8))
    assert model.batches[1:] == [4, 4], model.batches  # waiting for all eight would have made one batch of 8

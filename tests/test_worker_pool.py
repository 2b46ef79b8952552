"""The worker's runner pool: bounded concurrency without a task per job.

Pure asyncio (no server): the pool only schedules coroutines; the worker tests cover it
against Redis."""

from __future__ import annotations

import asyncio
import logging

import pytest
from _support import await_until

from streamq.worker.pool import RunnerPool


def test_a_pool_needs_a_runner() -> None:
    with pytest.raises(ValueError, match="at least one runner"):
        RunnerPool(0, lambda _: asyncio.sleep(0), lambda: None)


def test_never_more_than_size_items_run_at_once_and_all_run() -> None:
    async def scenario() -> None:
        running, peak, done = 0, 0, []
        finished = 0

        async def run(i: int) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.01)
            running -= 1
            done.append(i)

        def fin() -> None:
            nonlocal finished
            finished += 1

        pool: RunnerPool[int] = RunnerPool(3, run, fin)
        for i in range(10):
            pool.submit(i)
        await await_until(lambda: finished == 10, 5, interval=0.001)
        assert peak == 3
        assert sorted(done) == list(range(10))
        await pool.aclose()

    asyncio.run(scenario())


def test_items_that_never_suspend_need_no_task_each() -> None:
    async def scenario() -> None:
        seen: list[int] = []

        async def run(i: int) -> None:
            seen.append(i)

        pool: RunnerPool[int] = RunnerPool(100, run, lambda: None)
        before = len(asyncio.all_tasks())
        for i in range(1000):
            pool.submit(i)
        await await_until(lambda: len(seen) == 1000, 5, interval=0.001)
        assert seen == list(range(1000))  # in order, by one runner
        assert len(asyncio.all_tasks()) - before <= 2  # not one per item
        await pool.aclose()

    asyncio.run(scenario())


def test_a_suspended_item_does_not_hold_up_the_next_ones() -> None:
    async def scenario() -> None:
        gate = asyncio.Event()
        order: list[str] = []

        async def run(name: str) -> None:
            if name == "slow":
                await gate.wait()
            order.append(name)

        pool: RunnerPool[str] = RunnerPool(2, run, lambda: None)
        pool.submit("slow")
        pool.submit("fast")
        await await_until(lambda: order == ["fast"], 5, interval=0.001)
        gate.set()
        await await_until(lambda: order == ["fast", "slow"], 5, interval=0.001)
        await pool.aclose()

    asyncio.run(scenario())


def test_an_error_escaping_run_is_logged_and_the_runner_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        seen: list[int] = []
        finished = 0

        async def run(i: int) -> None:
            if i == 0:
                raise RuntimeError("a bug")
            seen.append(i)

        def fin() -> None:
            nonlocal finished
            finished += 1

        pool: RunnerPool[int] = RunnerPool(1, run, fin)
        for i in range(3):
            pool.submit(i)
        await await_until(lambda: finished == 3, 5, interval=0.001)
        assert seen == [1, 2]
        await pool.aclose()

    with caplog.at_level(logging.ERROR, logger="streamq"):
        asyncio.run(scenario())
    assert any(r.getMessage() == "runner_error" for r in caplog.records)


def test_close_returns_unstarted_items_and_lets_busy_ones_finish() -> None:
    async def scenario() -> None:
        gate = asyncio.Event()
        done: list[int] = []

        async def run(i: int) -> None:
            await gate.wait()
            done.append(i)

        pool: RunnerPool[int] = RunnerPool(2, run, lambda: None)
        for i in range(5):
            pool.submit(i)
        await await_until(lambda: len(pool.busy) == 2, 5, interval=0.001)
        assert pool.close() == [2, 3, 4]
        busy = list(pool.busy)
        with pytest.raises(RuntimeError, match="closed"):
            pool.submit(9)
        gate.set()
        await asyncio.wait_for(asyncio.gather(*busy), 5)
        assert sorted(done) == [0, 1]
        await pool.aclose()

    asyncio.run(scenario())


def test_aclose_cancels_busy_runners() -> None:
    async def scenario() -> None:
        cancelled: list[int] = []
        finished = 0

        async def run(i: int) -> None:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.append(i)
                raise

        def fin() -> None:
            nonlocal finished
            finished += 1

        pool: RunnerPool[int] = RunnerPool(2, run, fin)
        pool.submit(0)
        pool.submit(1)
        await await_until(lambda: len(pool.busy) == 2, 5, interval=0.001)
        await asyncio.wait_for(pool.aclose(), 5)
        assert sorted(cancelled) == [0, 1]
        assert finished == 2 and not pool.busy

    asyncio.run(scenario())

"""SingleFlight: concurrent callers of one key share one computation."""

from __future__ import annotations

import asyncio
import gc

import pytest

from server.kit.single_flight import SingleFlight


async def test_concurrent_callers_share_one_computation() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    calls = 0
    gate = asyncio.Event()

    async def compute() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return 42

    waiters = [asyncio.ensure_future(flight.run("k", compute)) for _ in range(50)]
    other = asyncio.ensure_future(flight.run("other", compute))
    for _ in range(3):
        await asyncio.sleep(0)
    assert calls == 2 and len(flight) == 2
    gate.set()
    assert await asyncio.gather(*waiters, other) == [42] * 51
    assert len(flight) == 0
    assert await flight.run("k", compute) == 42 and calls == 3, "done: the next call computes"


async def test_a_cancelled_caller_does_not_cancel_the_others() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    gate = asyncio.Event()

    async def compute() -> str:
        await gate.wait()
        return "body"

    first = asyncio.ensure_future(flight.run("k", compute))
    second = asyncio.ensure_future(flight.run("k", compute))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    gate.set()
    assert await second == "body"
    assert first.cancelled()


async def test_an_error_reaches_every_caller_and_is_not_cached() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    gate = asyncio.Event()
    attempts = 0

    async def failing() -> int:
        nonlocal attempts
        attempts += 1
        await gate.wait()
        raise ValueError("store closed")

    waiters = [asyncio.ensure_future(flight.run("k", failing)) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert attempts == 1 and all(isinstance(r, ValueError) for r in results)

    async def fine() -> int:
        return 7

    assert await flight.run("k", fine) == 7


async def test_an_error_nobody_awaits_is_still_retrieved(caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    flight: SingleFlight[str, int] = SingleFlight()

    async def failing() -> int:
        await asyncio.sleep(0)
        raise ValueError("nobody listens")

    caller = asyncio.ensure_future(flight.run("k", failing))
    await asyncio.sleep(0)
    caller.cancel()
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(flight) == 0
    gc.collect()
    assert "never retrieved" not in caplog.text

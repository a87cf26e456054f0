"""The process-wide download throttle, driven on a virtual clock.

Each simulation runs real asyncio tasks whose only waits are the throttle's
(injected) sleep; a driver advances the virtual clock to the earliest sleeper
once every task is blocked, so the timings below are exact, not wall-clock.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3sync.errors import ConfigError
from s3sync.sync.transfer.throttle import (
    MAX_QUANTUM,
    Throttle,
    UnitParseError,
    format_rate,
    parse_bytes,
    parse_rate,
    throttled_chunks,
)

MIB = 1024 * 1024


class VirtualTime:
    """A clock plus a sleep that only returns when the driver says time has passed."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (self.now + max(0.0, delay), next(self._seq), fut))
        await fut

    async def run(self, *coros: object) -> None:
        tasks = [asyncio.ensure_future(c) for c in coros]  # type: ignore[call-overload]
        while True:
            # let every runnable task reach its next virtual sleep (or finish)
            for _ in range(200):
                await asyncio.sleep(0)
                alive = sum(1 for t in tasks if not t.done())
                if len(self._heap) >= alive:
                    break
            if all(t.done() for t in tasks):
                for t in tasks:
                    t.result()
                return
            assert self._heap, "a task is blocked on something other than the throttle"
            when, _, fut = heapq.heappop(self._heap)
            self.now = max(self.now, when)
            fut.set_result(None)


async def _source(sizes: list[int], vt: VirtualTime | None = None) -> AsyncIterator[bytes]:
    """Chunks of the given sizes; a negative entry is a pause (in tenths of a second) instead."""
    for n in sizes:
        if n < 0:
            assert vt is not None
            await vt.sleep(-n / 10)
            continue
        yield b"x" * n


def _simulate(
    rate: int, streams: list[list[int]], idle_first: float = 0.0
) -> tuple[float, list[tuple[float, int]]]:
    """Run the streams concurrently through one throttle; return (t0, deliveries)."""
    vt = VirtualTime()
    throttle = Throttle(rate, clock=vt.clock, sleep=vt.sleep)
    vt.now += idle_first
    t0 = vt.now
    events: list[tuple[float, int]] = []

    async def consumer(sizes: list[int]) -> None:
        async for chunk in throttled_chunks(_source(sizes, vt), throttle):
            events.append((vt.now, len(chunk)))

    asyncio.run(vt.run(*(consumer(s) for s in streams)))
    assert sum(n for _, n in events) == sum(n for s in streams for n in s if n > 0)
    return t0, sorted(events)


def _max_window(events: list[tuple[float, int]], start: float, width: float) -> int:
    """Most bytes delivered in any window [a, a+width] with a >= start."""
    best = 0
    for i, (a, _) in enumerate(events):
        if a < start:
            continue
        total = 0
        for t, n in events[i:]:
            if t > a + width:
                break
            total += n
        best = max(best, total)
    return best


chunk_lists = st.lists(st.integers(min_value=1, max_value=3 * MIB), min_size=1, max_size=12)
# chunks with pauses (negative = tenths of a second of silence) in between: idle mid-run banks credit
paused_lists = st.lists(
    st.one_of(st.integers(min_value=1, max_value=3 * MIB), st.integers(min_value=-300, max_value=-1)),
    min_size=1,
    max_size=12,
)


class TestContract:
    """The two bounds of ``--bwlimit`` (README) hold for any mix of streams and chunk sizes."""

    @settings(max_examples=40, deadline=None)
    @given(
        rate=st.sampled_from([64 * 1024, MIB, 10 * MIB, 100 * MIB]),
        streams=st.lists(paused_lists, min_size=1, max_size=6),
    )
    def test_b_bytes_take_at_least_b_over_1_1_rate(self, rate: int, streams: list[list[int]]) -> None:
        """From start-up, every prefix of B delivered bytes arrives no sooner than B / (1.1 * RATE)."""
        t0, events = _simulate(rate, streams)
        delivered = 0
        for t, n in events:
            delivered += n
            assert t - t0 >= delivered / (1.1 * rate) - 1e-9

    @settings(max_examples=40, deadline=None)
    @given(
        rate=st.sampled_from([64 * 1024, MIB, 10 * MIB]),
        streams=st.lists(paused_lists, min_size=1, max_size=6),
        idle=st.sampled_from([0.0, 0.5, 100.0]),
    )
    def test_no_five_second_window_over_5_5_rate(
        self, rate: int, streams: list[list[int]], idle: float
    ) -> None:
        """After the first second, 5 s carry <= 5.5 * RATE, even after idle spells that banked credit."""
        t0, events = _simulate(rate, streams, idle_first=idle)
        assert _max_window(events, t0 + 1.0, 5.0) <= 5.5 * rate

    @settings(max_examples=25, deadline=None)
    @given(rate=st.sampled_from([MIB, 10 * MIB]), streams=st.lists(chunk_lists, min_size=1, max_size=4))
    def test_the_limit_is_used_not_wasted(self, rate: int, streams: list[list[int]]) -> None:
        """With nothing else slowing the readers, the total takes no longer than B / RATE (plus nothing)."""
        t0, events = _simulate(rate, streams)
        total = sum(n for _, n in events)
        assert events[-1][0] - t0 <= total / rate + 1e-6

    def test_a_single_big_chunk_is_delivered_in_quanta(self) -> None:
        """A 4 MiB chunk at 1 MiB/s reaches the consumer in 64 KiB slices, not in one lump."""
        t0, events = _simulate(MIB, [[4 * MIB]])
        assert {n for _, n in events} == {MIB // 16}
        assert events[-1][0] - t0 == pytest.approx(4.0)


class TestFairness:
    """Concurrent callers are served in the order they asked."""

    def test_a_big_part_does_not_starve_a_small_object(self) -> None:
        """A small object asked for just after a 16 MiB part gets through long before the part ends."""
        vt = VirtualTime()
        throttle = Throttle(MIB, clock=vt.clock, sleep=vt.sleep)
        done: dict[str, float] = {}

        async def big() -> None:
            await throttle.consume(16 * MIB)
            done["big"] = vt.now

        async def small() -> None:
            await asyncio.sleep(0)
            await throttle.consume(4096)
            done["small"] = vt.now

        asyncio.run(vt.run(big(), small()))
        assert done["small"] < 1.0 + 1000.0
        assert done["big"] == pytest.approx(1000.0 + 16.0, rel=1e-3)


class TestUnlimited:
    """Rate 0 means no limit: nothing waits, bytes are still counted."""

    async def test_zero_rate_never_sleeps(self) -> None:
        slept: list[float] = []

        async def sleep(d: float) -> None:
            slept.append(d)

        throttle = Throttle(0, sleep=sleep)
        await throttle.consume(10 * 1024 * MIB)
        out = [c async for c in throttled_chunks(_source([5 * MIB, 7]), throttle)]
        assert slept == []
        assert [len(c) for c in out] == [5 * MIB, 7]
        assert throttle.bytes_total == 10 * 1024 * MIB + 5 * MIB + 7
        assert not throttle.limited

    def test_negative_rate_is_refused(self) -> None:
        with pytest.raises(ValueError):
            Throttle(-1)

    def test_quantum_bounds(self) -> None:
        """The quantum is RATE/16, at least one byte and at most MAX_QUANTUM."""
        assert Throttle(16 * MIB).quantum == MIB
        assert Throttle(1024 * MIB).quantum == MAX_QUANTUM
        assert Throttle(3).quantum == 1


class TestParse:
    """RATE and SIZE: a number with K/M/G = 1024ⁿ; errors name the flag."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("0", 0),
            ("10", 10),
            ("10K", 10 * 1024),
            ("10k", 10 * 1024),
            ("10M", 10 * MIB),
            ("1.5M", int(1.5 * MIB)),
            ("2G", 2 * 1024**3),
            ("10MiB", 10 * MIB),
            ("10MB", 10 * MIB),
            (" 7 K ", 7 * 1024),
            (1048576, MIB),
        ],
    )
    def test_values(self, text: str | int, expected: int) -> None:
        assert parse_rate(text) == expected

    @pytest.mark.parametrize("text", ["", "fast", "10X", "-1M", "1e3", "M", "10 MM", "1,5M"])
    def test_errors_name_the_flag(self, text: str) -> None:
        with pytest.raises(UnitParseError, match=r"^--bwlimit: "):
            parse_rate(text)

    def test_error_is_a_config_error_and_a_value_error(self) -> None:
        """The CLI maps ConfigError to exit 2; pydantic validators need a ValueError."""
        with pytest.raises(ConfigError):
            parse_bytes("nope", "--min-size")
        with pytest.raises(ValueError, match="--min-size"):
            parse_bytes("nope", "--min-size")

    def test_negative_number_and_bool_are_refused(self) -> None:
        with pytest.raises(UnitParseError):
            parse_bytes(-5, "sync.bwlimit")
        with pytest.raises(UnitParseError):
            parse_bytes(True, "sync.bwlimit")

    @pytest.mark.parametrize("rate", [0, 1, 1000, 1024, 10 * MIB, 3 * 1024**3, MIB + 1])
    def test_format_round_trips(self, rate: int) -> None:
        assert parse_rate(format_rate(rate)) == rate

"""Rate limits: bandwidth and request rate hold over time; concurrency halves when the
store throttles and grows back after successes. A fake clock: no test sleeps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from migrate.executor import TransferConfig
from migrate.limits import AdaptiveLimit, TokenBucket
from tests.helpers import body


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_bandwidth_bucket_holds_the_long_run_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1_000_000, clock=clock, sleep=clock.sleep)
    for _ in range(10):
        bucket.take(500_000)  # 5 MB at 1 MB/s: the first second's burst is free
    assert clock.now == pytest.approx(4.0)


def test_concurrency_halves_on_throttling_and_recovers() -> None:
    limit = AdaptiveLimit(8, grow_after=5)
    for _ in range(3):
        limit.acquire()
        limit.release(throttled=True)
    assert limit.limit == 1 and limit.lowest == 1 and limit.throttled == 3
    for _ in range(5 * 7):
        limit.acquire()
        limit.release(throttled=False)
    assert limit.limit == 8


def test_one_blip_seen_by_every_call_in_flight_halves_the_concurrency_once() -> None:
    """Eight requests cut by the same network blip: as TCP, one decrease for the calls
    started before it (8 -> 4, not to 1); a call started under the lower limit and
    throttled too halves it again. Each throttled answer is still counted."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from migrate.errors import Retryable
    from migrate.limits import LimitedAdapter

    started = Barrier(8)

    class Store:
        site_name, capabilities = "dst", None

        def head(self, container: str, key: str) -> Any:
            started.wait(timeout=10)  # all eight in flight before any answer
            raise Retryable("503 SlowDown")

    limit = AdaptiveLimit(8)
    store = LimitedAdapter(Store(), concurrency=limit)  # type: ignore[arg-type]

    def one(_: int) -> None:
        with pytest.raises(Retryable):
            store.head("b", "k")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(8)))
    assert (limit.limit, limit.lowest, limit.throttled) == (4, 4, 8)
    later = limit.acquire()  # under the lower limit: its throttling is news
    limit.release(throttled=True, epoch=later)
    assert (limit.limit, limit.throttled) == (2, 9)


def test_a_phase_with_bwlimit_takes_as_long_as_its_bytes_need(env_for: Any) -> None:
    env = env_for("local", "s3")
    data = {f"k/{i}": (body(i, 200_000), "application/octet-stream", {}, False)
            for i in range(10)}  # fmt: skip
    env.seed(data)
    plan = env.plan()
    from migrate.executor import run_phase
    from migrate.ledger import Ledger

    clock = FakeClock()  # the limits' time is the fake one: the copy's real time is none
    with Ledger(env.state) as ledger:
        summary = run_phase(plan, "bulk-1", ledger, env.source, env.destination,
                            config=TransferConfig(concurrency=2, bwlimit=500_000),
                            sleep=clock.sleep, clock=clock)  # fmt: skip
    assert summary.copied == 10
    # 2 MB at 0.5 MB/s, less the first second's burst: at least 3 s of waiting.
    assert sum(clock.slept) >= 3.0


@pytest.fixture
def env_for(site_for: Any, tmp_path: Path) -> Any:
    from tests.test_executor import Env

    def make(source: str, destination: str) -> Env:
        return Env(site_for(source), site_for(destination), tmp_path)

    return make


def test_a_store_is_taken_as_gone_only_after_answering_nothing_for_a_while() -> None:
    """Requests unanswered (NoAnswer: timeouts, cut connections) for `stall_after` seconds
    since the first of them was sent (not since it failed: a timeout is already silence):
    the store is gone (EndpointUnreachable), and every later call
    fails so at once, sending nothing. Throttling is an answer: a store busy for longer is
    not gone; nor is one not asked for a long while (a bandwidth bucket, the other store's
    work), then failing once (a review: one cut connection stopped a healthy run)."""
    from migrate.errors import EndpointUnreachable, NoAnswer, Retryable
    from migrate.limits import LimitedAdapter

    clock = FakeClock()

    class Store:
        site_name, capabilities = "dst", None
        calls = 0
        fails: type[Exception] | None = NoAnswer

        def head(self, container: str, key: str) -> Any:
            Store.calls += 1
            clock.now += 60  # a read timeout
            if Store.fails is not None:
                raise Store.fails("timed out")

    store = LimitedAdapter(Store(), concurrency=AdaptiveLimit(4), clock=clock,  # type: ignore[arg-type]
                           sleep=clock.sleep, stall_after=300)  # fmt: skip
    Store.fails = Retryable  # 503 SlowDown, for ten minutes
    for _ in range(10):
        with pytest.raises(Retryable):
            store.head("b", "k")
    clock.now += 3600  # not asked for an hour, then one timeout, then an answer
    Store.fails = NoAnswer
    with pytest.raises(NoAnswer):
        store.head("b", "k")
    Store.fails = None
    store.head("b", "k")
    Store.fails = NoAnswer
    for _ in range(4):  # 240 s of silence since the first was sent
        with pytest.raises(NoAnswer):
            store.head("b", "k")
    with pytest.raises(EndpointUnreachable, match="no answer for 300 s"):
        store.head("b", "k")
    sent = Store.calls
    with pytest.raises(EndpointUnreachable):
        store.head("b", "k")
    assert Store.calls == sent


def test_a_read_whose_body_never_comes_is_silence_though_its_headers_came() -> None:
    """A store that answers each read's headers and never its body: the headers are no
    answer, the body's reads are (a review: each retry's headers kept the run going); an
    empty object's read, answered without a request, is no answer either."""
    from migrate.errors import EndpointUnreachable, NoAnswer
    from migrate.limits import LimitedAdapter

    clock = FakeClock()

    class Body:
        info = None
        stalls = True
        empty = False

        def read(self, size: int = -1, /) -> bytes:
            if Body.empty:
                return b""
            clock.now += 60  # a read timeout
            if Body.stalls:
                raise NoAnswer("timed out")
            return b"bytes"

        def close(self) -> None:
            pass

    class Store:
        site_name, capabilities = "src", None

        def open_range(self, *args: Any, **kwargs: Any) -> Body:
            return Body()  # the headers: answered at once

    store = LimitedAdapter(Store(), concurrency=AdaptiveLimit(4), clock=clock,  # type: ignore[arg-type]
                           sleep=clock.sleep, stall_after=300)  # fmt: skip
    Body.stalls = False
    assert store.open_range("b", "k").read() == b"bytes"
    Body.stalls = True
    with pytest.raises(NoAnswer):  # a body timed out slows the copy down, as a call's would
        store.open_range("b", "k").read()
    assert (store.concurrency.limit, store.concurrency.throttled) == (2, 1)
    for _ in range(3):  # 240 s of silence since the first body was asked for
        with pytest.raises(NoAnswer):
            store.open_range("b", "k").read()
        Body.empty = True
        assert store.open_range("b", "empty").read() == b""
        Body.empty = False
    with pytest.raises(EndpointUnreachable, match="no answer for 300 s"):
        store.open_range("b", "k").read()
    with pytest.raises(EndpointUnreachable):  # gone: no request sent any more
        store.open_range("b", "k")


def test_a_bucket_idle_for_a_while_still_bursts_one_second_at_most() -> None:
    """Time not spent (a store not asked for a minute) does not save up: after it, one
    second's worth goes at once and the rest waits its turn, so --bwlimit and --max-rps
    hold over any second, not only on average since the run began."""
    clock = FakeClock()
    bucket = TokenBucket(1_000, clock=clock, sleep=clock.sleep)
    clock.now += 60  # idle
    bucket.take(1_000)  # the burst: free
    assert clock.slept == []
    bucket.take(1_000)  # the next second's worth: waited for
    assert sum(clock.slept) == pytest.approx(1.0)


def test_no_more_calls_are_in_flight_than_the_limit_and_it_never_drops_to_none() -> None:
    """A call over the limit waits for a slot; however often the store throttles, one
    call at a time may still go (a limit of none would stop the run for good)."""
    import threading

    limit = AdaptiveLimit(2)
    limit.acquire()
    limit.acquire()
    third = threading.Thread(target=limit.acquire, daemon=True)
    third.start()
    third.join(0.3)
    assert third.is_alive(), "a third call went while two were in flight under a limit of 2"
    limit.release(throttled=False)
    third.join(5)
    assert not third.is_alive()
    for _ in range(5):
        limit.throttle()
    assert (limit.limit, limit.lowest) == (1, 1)


class _MinuteEach:
    """A store each HEAD of which takes a minute of `clock` and fails with `fails`; behind
    the limits, gone after 300 s of silence (`stalling`)."""

    site_name, capabilities = "dst", None

    def __init__(self, clock: FakeClock) -> None:
        from migrate.errors import NoAnswer

        self.clock = clock
        self.fails: type[Exception] = NoAnswer

    def head(self, container: str, key: str) -> Any:
        self.clock.now += 60
        raise self.fails("timed out, throttled or refused")

    def stalling(self) -> Any:
        from migrate.limits import LimitedAdapter

        return LimitedAdapter(self, concurrency=AdaptiveLimit(4), clock=self.clock,  # type: ignore[arg-type]
                              sleep=self.clock.sleep, stall_after=300)  # fmt: skip


def test_a_store_that_throttles_after_timing_out_has_answered_and_is_not_gone() -> None:
    """A refusal (503 SlowDown) is an answer: a store that timed out for a while, then
    throttles for longer than `stall_after`, then times out once more is busy, not gone."""
    from migrate.errors import EndpointUnreachable, NoAnswer, Retryable

    inner = _MinuteEach(FakeClock())
    store = inner.stalling()
    for fails in (NoAnswer, NoAnswer, Retryable, Retryable, Retryable, Retryable, NoAnswer):
        inner.fails = fails
        with pytest.raises(fails):
            store.head("b", "k")
    inner.fails = NoAnswer
    for _ in range(3):  # 240 s of silence since the last 503: not yet gone
        with pytest.raises(NoAnswer):
            store.head("b", "k")
    with pytest.raises(EndpointUnreachable):
        store.head("b", "k")


def test_a_connection_refused_is_no_answer_and_does_not_restart_the_silence() -> None:
    """A store that refuses connections (EndpointUnreachable) between timeouts has not
    answered: it is gone `stall_after` seconds after the first request went unanswered."""
    from migrate.errors import EndpointUnreachable, NoAnswer

    inner = _MinuteEach(FakeClock())
    store = inner.stalling()
    for fails in (NoAnswer, NoAnswer, EndpointUnreachable, NoAnswer):
        inner.fails = fails
        with pytest.raises(fails):
            store.head("b", "k")
    inner.fails = NoAnswer
    with pytest.raises(EndpointUnreachable, match="no answer for 300 s"):
        store.head("b", "k")


def test_bwlimit_holds_for_the_parts_of_large_objects_and_single_writes_alike() -> None:
    """Every byte written goes through the bandwidth bucket: a single PUT's and each part
    of a multipart upload's (a large object's bytes are most of a phase's)."""
    from migrate.limits import LimitedAdapter

    clock = FakeClock()

    class Store:
        site_name, capabilities = "dst", None

        def put_object(self, *args: Any, **kwargs: Any) -> None:
            pass

        def upload_part(self, *args: Any, **kwargs: Any) -> None:
            pass

    store = LimitedAdapter(Store(), concurrency=AdaptiveLimit(4), bwlimit=1_000_000,  # type: ignore[arg-type]
                           clock=clock, sleep=clock.sleep)  # fmt: skip
    for n in range(1, 6):  # 5 MB of parts at 1 MB/s: the first second's burst is free
        store.upload_part("b", "k", "u", n, b"", 1_000_000, {})
    assert clock.now == pytest.approx(4.0)
    store.put_object("b", "small", b"", 2_000_000, None, {})  # type: ignore[arg-type]
    assert clock.now == pytest.approx(6.0)


@pytest.mark.parametrize(("other", "at", "gone"), [("late", 100, True), ("quick", 10, False)])
def test_silence_is_timed_from_the_first_unanswered_request_or_the_last_answer_since(
    other: str, at: float, gone: bool
) -> None:
    """A request sent at 0 is held and times out at the end; another is sent at `at` s.
    `late` times out at once, before the first: the silence began when the first was sent,
    so the store is gone at 310 s (`stall_after` 300), not 300 s after the later one.
    `quick` is answered: the silence began at that answer, 295 s before the first times
    out at 305 s: not gone yet."""
    import threading

    from migrate.errors import EndpointUnreachable, NoAnswer
    from migrate.limits import LimitedAdapter

    clock = FakeClock()
    sent, release = threading.Event(), threading.Event()

    class Store:
        site_name, capabilities = "dst", None

        def head(self, container: str, key: str) -> Any:
            if key == "held":
                sent.set()
                release.wait(10)
            if key != "quick":
                raise NoAnswer("timed out")

    store = LimitedAdapter(Store(), concurrency=AdaptiveLimit(4), clock=clock,  # type: ignore[arg-type]
                           sleep=clock.sleep, stall_after=300)  # fmt: skip
    raised: list[BaseException] = []

    def held() -> None:
        try:
            store.head("b", "held")  # sent at 0
        except BaseException as exc:
            raised.append(exc)

    first = threading.Thread(target=held)
    first.start()
    assert sent.wait(10)
    clock.now = at
    if other == "late":
        with pytest.raises(NoAnswer):
            store.head("b", "late")
    else:
        store.head("b", "quick")
    clock.now = 310 if gone else 305
    release.set()
    first.join(10)
    assert len(raised) == 1, raised
    assert isinstance(raised[0], EndpointUnreachable if gone else NoAnswer), raised


def test_concurrency_grows_back_only_on_successes_since_the_last_throttle_and_no_higher() -> None:
    """Successes counted before a throttle do not count towards growing back after it; and
    however many succeed, the limit never passes the maximum it started at."""
    limit = AdaptiveLimit(8, grow_after=5)
    for _ in range(4):
        limit.release(throttled=False, epoch=limit.acquire())
    limit.release(throttled=True, epoch=limit.acquire())
    assert limit.limit == 4
    limit.release(throttled=False, epoch=limit.acquire())
    assert limit.limit == 4, "grew back on successes from before the throttle"
    for _ in range(200):
        limit.release(throttled=False, epoch=limit.acquire())
    assert limit.limit == 8


def test_listings_pass_the_request_rate_too() -> None:
    """--max-rps holds for listings (the conflict check lists the destination, the sweep
    its uploads) as for every other request."""
    from migrate.limits import LimitedAdapter

    clock = FakeClock()

    class Store:
        site_name, capabilities = "dst", None

        def list_objects(self, *args: Any) -> Any:
            return iter(())

        def list_multipart_uploads(self, *args: Any) -> Any:
            return iter(())

    store = LimitedAdapter(Store(), concurrency=AdaptiveLimit(4), max_rps=2,  # type: ignore[arg-type]
                           clock=clock, sleep=clock.sleep)  # fmt: skip
    for _ in range(4):  # the first second's two are free
        list(store.list_objects("b"))
    assert clock.now == pytest.approx(1.0)
    for _ in range(2):
        list(store.list_multipart_uploads("b"))
    assert clock.now == pytest.approx(2.0)

"""Rate limits around an adapter: bandwidth, requests per second, and a concurrency limit
that halves when the store throttles and grows back as requests succeed.

`LimitedAdapter` wraps any StoreAdapter with the same calls; the executor composes it once,
around each endpoint's adapter. Clock and sleep are injected, so tests never sleep.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TypeVar

from migrate.errors import EndpointUnreachable, MigrateError, NoAnswer, Retryable
from providers.base import (
    ObjectInfo,
    PartResult,
    Protection,
    ReadStream,
    Replication,
    StoreAdapter,
    UploadInfo,
    WriteAttrs,
    WriteBody,
    WriteResult,
)

T = TypeVar("T")


class TokenBucket:
    """`rate` tokens per second, bursts up to one second's worth (or one request's size)."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._tokens = rate
        self._last = clock()
        self._lock = threading.Lock()
        self.waited = 0.0

    def take(self, n: float) -> None:
        """Wait until n tokens are available, then spend them (n may exceed the burst:
        the debt is waited off, so the long-run rate holds)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= n
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
            self.waited += wait
        if wait > 0:
            self._sleep(wait)


class AdaptiveLimit:
    """At most `limit` calls in flight; halved on throttling, +1 after `grow_after`
    successes, never below 1 nor above `maximum` (additive increase, multiplicative
    decrease, as TCP does). As TCP, one decrease a window: calls started before the last
    decrease that come back throttled (one network blip seen by every stream at once) do
    not halve it again; the calls started under the lower limit tell whether it is low
    enough."""

    def __init__(self, maximum: int, grow_after: int = 20) -> None:
        self.maximum = maximum
        self.limit = maximum
        self.lowest = maximum
        self.throttled = 0
        self._grow_after = grow_after
        self._successes = 0
        self._in_flight = 0
        self.epoch = 0  # decreases so far: a call's epoch is the one it started in
        self._cond = threading.Condition()

    def acquire(self) -> int:
        """Wait for a slot; the epoch the call starts in (for `release`)."""
        with self._cond:
            while self._in_flight >= self.limit:
                self._cond.wait()
            self._in_flight += 1
            return self.epoch

    def release(self, throttled: bool, epoch: int | None = None) -> None:
        """`epoch`: the one `acquire` gave (None: halve whenever throttled)."""
        with self._cond:
            self._in_flight -= 1
            if throttled:
                self._halve(epoch)
            else:
                self._successes += 1
                if self._successes >= self._grow_after and self.limit < self.maximum:
                    self.limit += 1
                    self._successes = 0
            self._cond.notify_all()

    def throttle(self, epoch: int | None = None) -> None:
        """A failure outside a call's slot (a read's body timed out): halved, as for a
        call throttled."""
        with self._cond:
            self._halve(epoch)

    def _halve(self, epoch: int | None) -> None:
        self.throttled += 1
        self._successes = 0
        if epoch is not None and epoch != self.epoch:
            return  # started before the last decrease, which answered for it
        self.epoch += 1
        self.limit = max(1, self.limit // 2)
        self.lowest = min(self.lowest, self.limit)


# A store whose requests have all gone unanswered (timed out or cut) for this long, from
# the first of them, is taken as gone: the run stops (exit 6) instead of retrying one
# request at a time for hours.
STALL_AFTER = 300.0


class LimitedAdapter:
    """A StoreAdapter whose calls pass a request-rate bucket, a bandwidth bucket (bytes
    written) and the adaptive concurrency limit; and that takes the store as gone once its
    requests have gone unanswered for `stall_after` seconds from the first of them, none
    answered since (EndpointUnreachable, which stops a run), every call from then on
    failing so at once. Time the store is not asked (a bandwidth bucket, the other
    store's work) is no silence."""

    def __init__(
        self,
        inner: StoreAdapter,
        *,
        concurrency: AdaptiveLimit,
        max_rps: float | None = None,
        bwlimit: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        stall_after: float = STALL_AFTER,
    ) -> None:
        self.inner = inner
        self.site_name = inner.site_name
        self.capabilities = inner.capabilities
        self.concurrency = concurrency
        self.requests = TokenBucket(max_rps, clock=clock, sleep=sleep) if max_rps else None
        self.bandwidth = TokenBucket(bwlimit, clock=clock, sleep=sleep) if bwlimit else None
        self._clock = clock
        self._stall_after = stall_after
        # When the store was last asked and has not answered since (the start of the first
        # request since the last answer that went unanswered); None once answered.
        self._unanswered_since: float | None = None
        self._answered_at: float | None = None  # the last answer
        self._gone: EndpointUnreachable | None = None

    def _silence(self, asked_at: float) -> None:
        """A request sent at `asked_at` went unanswered (NoAnswer): the store is taken as
        gone (raised) once nothing has been answered for `stall_after` seconds since the
        first such request was sent (not since it failed: its timeouts and retries took
        minutes of that silence already), or since the last answer, if later."""
        now = self._clock()
        answered = self._answered_at
        start = asked_at if answered is None else max(asked_at, answered)
        since = self._unanswered_since  # read once: another thread may reset it meanwhile
        if since is None or start < since:
            since = self._unanswered_since = start
        silent = now - since
        if silent >= self._stall_after:
            self._gone = EndpointUnreachable(
                f"{self.site_name}: no answer for {silent:.0f} s (every request timed "
                "out or was cut)",
                hint="check that the store is up and reachable, then run the same "
                "command again: it resumes",
            )
            raise self._gone from None

    def _answered(self) -> None:
        self._unanswered_since = None
        self._answered_at = self._clock()

    def _call(self, fn: Callable[[], T], sent: int = 0, *, answers: bool = True) -> T:
        """`answers` False: the call's success is not yet an answer (a read's headers,
        its body still to come: `_WatchedStream` says when it comes)."""
        if self._gone is not None:
            raise self._gone
        if self.requests:
            self.requests.take(1)
        if self.bandwidth and sent:
            self.bandwidth.take(sent)
        epoch = self.concurrency.acquire()
        throttled = False
        asked = self._clock()
        try:
            result = fn()
        except NoAnswer:
            throttled = True
            self._silence(asked)
            raise
        except Retryable:
            throttled = True
            self._answered()  # an answer, if a refusal
            raise
        except EndpointUnreachable:  # no connection: no answer either
            raise
        except MigrateError:
            self._answered()
            raise
        finally:
            self.concurrency.release(throttled, epoch)
        if answers:
            self._answered()
        return result

    def check(self, container: str) -> None:
        self._call(lambda: self.inner.check(container))

    def check_account(self) -> str:
        return self._call(self.inner.check_account)

    def create_container(self, container: str) -> None:
        self._call(lambda: self.inner.create_container(container))

    def list_objects(
        self, container: str, prefix: str = "", start_after: str | None = None
    ) -> Iterator[ObjectInfo]:
        # Pages are fetched lazily inside the iterator: only the rate bucket applies.
        if self.requests:
            self.requests.take(1)
        return self.inner.list_objects(container, prefix, start_after)

    def head(self, container: str, key: str) -> ObjectInfo:
        return self._call(lambda: self.inner.head(container, key))

    def read_tags(
        self, container: str, key: str, *, version_id: str | None = None
    ) -> dict[str, str]:
        return self._call(lambda: self.inner.read_tags(container, key, version_id=version_id))

    def open_range(
        self,
        container: str,
        key: str,
        start: int = 0,
        end: int | None = None,
        *,
        if_match: str | None = None,
        version_id: str | None = None,
    ) -> ReadStream:
        # A store may answer a read's headers and then stall its body: the body's reads
        # are what answers (or does not), for the watchdog.
        stream = self._call(
            lambda: self.inner.open_range(
                container, key, start, end, if_match=if_match, version_id=version_id
            ),
            answers=False,
        )
        return _WatchedStream(stream, self)

    def put_object(
        self,
        container: str,
        key: str,
        body: WriteBody,
        length: int,
        attrs: WriteAttrs,
        checksums: Mapping[str, str],
        *,
        expect: str | None = None,
    ) -> WriteResult:
        return self._call(
            lambda: self.inner.put_object(
                container, key, body, length, attrs, checksums, expect=expect
            ),
            length,
        )

    def create_multipart(self, container: str, key: str, attrs: WriteAttrs) -> str:
        return self._call(lambda: self.inner.create_multipart(container, key, attrs))

    def upload_part(
        self,
        container: str,
        key: str,
        upload_id: str,
        part_number: int,
        body: WriteBody,
        length: int,
        checksums: Mapping[str, str],
    ) -> PartResult:
        return self._call(
            lambda: self.inner.upload_part(
                container, key, upload_id, part_number, body, length, checksums
            ),
            length,
        )

    def complete_multipart(
        self,
        container: str,
        key: str,
        upload_id: str,
        parts: Sequence[PartResult],
        attrs: WriteAttrs | None = None,
        *,
        expect: str | None = None,
    ) -> WriteResult:
        return self._call(
            lambda: self.inner.complete_multipart(
                container, key, upload_id, parts, attrs, expect=expect
            )
        )

    def replace_metadata(
        self,
        container: str,
        key: str,
        attrs: WriteAttrs,
        *,
        if_match: str,
        size: int,
        version_id: str | None = None,
    ) -> WriteResult:
        return self._call(
            lambda: self.inner.replace_metadata(
                container, key, attrs, if_match=if_match, size=size, version_id=version_id
            )
        )

    def abort_multipart(self, container: str, key: str, upload_id: str) -> None:
        self._call(lambda: self.inner.abort_multipart(container, key, upload_id))

    def list_multipart_uploads(self, container: str, prefix: str = "") -> Iterator[UploadInfo]:
        if self.requests:
            self.requests.take(1)
        return self.inner.list_multipart_uploads(container, prefix)

    def list_parts(self, container: str, key: str, upload_id: str) -> Iterator[PartResult]:
        if self.requests:
            self.requests.take(1)
        return self.inner.list_parts(container, key, upload_id)

    def delete(self, container: str, key: str) -> None:
        self._call(lambda: self.inner.delete(container, key))

    def replication(self, container: str) -> Replication:
        return self._call(lambda: self.inner.replication(container))

    def protection(self, container: str) -> Protection:
        return self._call(lambda: self.inner.protection(container))

    def close(self) -> None:
        self.inner.close()


class _WatchedStream:
    """A read's body, whose reads count for the stall watchdog as requests do: bytes, or a
    refusal, are an answer; a read timed out or cut (NoAnswer) is silence, and once the
    store has been silent for `stall_after` seconds it is gone (EndpointUnreachable). An
    empty read is neither: an empty object's is answered without a request."""

    def __init__(self, inner: ReadStream, adapter: LimitedAdapter) -> None:
        self._inner = inner
        self._adapter = adapter
        self._epoch = adapter.concurrency.epoch  # about when the read was asked

    @property
    def info(self) -> ObjectInfo | None:
        return self._inner.info

    def read(self, size: int = -1, /) -> bytes:
        adapter = self._adapter
        if adapter._gone is not None:
            raise adapter._gone
        asked = adapter._clock()
        try:
            data = self._inner.read(size)
        except NoAnswer:
            adapter.concurrency.throttle(self._epoch)  # as a call timed out would
            adapter._silence(asked)
            raise
        except EndpointUnreachable:
            raise
        except MigrateError:  # a refusal in the body's course (a later chunk's 412, 503)
            adapter._answered()
            raise
        if data:
            adapter._answered()
        return data

    def close(self) -> None:
        self._inner.close()

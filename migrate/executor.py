"""Run one phase of an approved plan: resumable, checksummed, bounded.

The phase's object set is resolved from the inventory the first time it runs and then
fixed in the ledger (delta's and cutover's are resolved again at each run, after their
re-list). Objects are copied in parallel (`concurrency` threads, each holding at
most one part in memory), every adapter call goes through one retry layer (exponential
backoff with jitter on throttling, timeouts and resets), and every change of state is a
ledger transaction (those of objects sent in one request are committed in groups, see
migrate/ledger.py), so a kill -9 at any instant leaves a state the next run can trust:
- done objects are skipped;
- an object in progress resumes its multipart upload (parts already sent are not sent
  again) or, if its upload is gone, starts over under the same key, atomically replaced;
- unfinished uploads at the destination for this plan's keys that the ledger does not
  own are aborted first, so nothing orphaned or partial remains (where the store lets
  them be listed and aborted: a sweep it refuses is skipped with a warning).
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from types import SimpleNamespace
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from migrate.conflicts import mark_conflicts
from migrate.delta import settle_gone
from migrate.errors import (
    SITE_WIDE,
    ConfigError,
    CredentialsRejected,
    EndpointUnreachable,
    MigrateError,
    NotFound,
    Permanent,
    PlanError,
    Retryable,
    RouteRefused,
    SourceChanged,
    StoreFull,
    TransferError,
    Unsupported,
    as_store_failure,
    redact,
)
from migrate.ledger import CONFLICT, Ledger, TransferRow, refuse_decommission
from migrate.limits import STALL_AFTER, AdaptiveLimit, LimitedAdapter
from migrate.memory import return_large_buffers
from migrate.plan import CERTIFICATION_CONDITION, PhaseKind, Plan
from migrate.summary import PhaseSummary, Subscriber, finished_already
from migrate.transfer import (
    DEFAULT_PART_SIZE,
    ObjectCopy,
    PartBuffers,
    RunStop,
    Stopped,
    TransferItem,
    TransferOutcome,
    WriteConflict,
)
from providers.base import ABSENT, PartResult, StoreAdapter

T = TypeVar("T")
BATCH = 500


@dataclass(frozen=True)
class TransferConfig:
    """`concurrency` objects are copied at once, and the parts of large objects are sent
    by `concurrency` more threads while the next parts are read (by `concurrency` more,
    ahead, when buffers are free). Memory is bounded by `buffers` x `part_size` (default
    buffers: concurrency)."""

    concurrency: int = 8
    part_size: int = DEFAULT_PART_SIZE
    buffers: int | None = None
    bwlimit: float | None = None  # bytes per second written to the destination
    max_rps: float | None = None  # requests per second, per endpoint
    max_attempts: int = 6
    backoff_initial: float = 0.2
    backoff_max: float = 20.0
    # Seconds a store may answer nothing (every request timed out or cut) before the run
    # takes it as gone and stops (exit 6).
    stall_after: float = STALL_AFTER


class _Retries:
    """The one retry layer: Retryable errors are retried with backoff, others are not.

    The first attempt runs bare: building tenacity's loop for each of the two requests of
    a small object costs more CPU than the request itself; it takes over after a failure.

    Retries are counted per object: `start()` gives the object's thread a fresh count in
    its context, and the threads that read or send the object's parts run in a copy of
    that context (transfer.py submits them so), so their retries add to the same count."""

    def __init__(self, config: TransferConfig, sleep: Callable[[float], None]) -> None:
        self._config = config
        self._sleep = sleep
        self._counts: ContextVar[list[int] | None] = ContextVar("retries", default=None)
        self._lock = threading.Lock()
        self._wait = wait_exponential_jitter(initial=config.backoff_initial, max=config.backoff_max)

    def start(self) -> None:
        self._counts.set([0])

    def take(self) -> int:
        counts = self._counts.get()
        if counts is None:
            return 0
        with self._lock:
            n, counts[0] = counts[0], 0
        return n

    def _retry_after(self, seconds: float) -> None:
        # Counted once its wait is over: a wait the run's stop cut short makes no retry.
        self._sleep(seconds)
        self._count()

    def _count(self) -> None:
        counts = self._counts.get()
        if counts is None:
            counts = [0]
            self._counts.set(counts)
        with self._lock:
            counts[0] += 1

    def _after_first(self, state: RetryCallState) -> float:
        """Backoff for the loop's attempt n, which is attempt n + 1 of the call."""
        return self._wait(SimpleNamespace(attempt_number=state.attempt_number + 1))  # type: ignore[arg-type]

    def __call__(self, fn: Callable[[], T], /) -> T:
        try:
            return fn()
        except (Retryable, EndpointUnreachable) as exc:  # an outage may be a store's restart
            if not _worth_another_try(exc) or self._config.max_attempts <= 1:
                raise
        self._retry_after(self._wait(SimpleNamespace(attempt_number=1)))  # type: ignore[arg-type]
        retrying = Retrying(
            retry=retry_if_exception(_worth_another_try),
            wait=self._after_first,
            stop=stop_after_attempt(self._config.max_attempts - 1),
            sleep=self._retry_after,
            reraise=True,
        )
        return retrying(fn)


def _worth_another_try(exc: BaseException) -> bool:
    # A full disk does not empty itself between tries.
    return isinstance(exc, Retryable | EndpointUnreachable) and not isinstance(exc, StoreFull)


class _LedgerRecorder:
    def __init__(self, ledger: Ledger, plan: str) -> None:
        self._ledger = ledger
        self._plan = plan

    def upload_started(self, item: TransferItem, upload_id: str, part_size: int) -> None:
        # The attempt was counted when the object was taken (`work`): one attempt, one count.
        self._ledger.transfer_started(
            self._plan, item.container, item.key, upload_id, part_size, attempt=False
        )

    def part_done(self, item: TransferItem, upload_id: str, part: PartResult, md5: str) -> None:
        self._ledger.part_done(
            self._plan,
            item.container,
            item.key,
            upload_id,
            part.part_number,
            part.size,
            md5,
            part.etag,
        )

    def claimed(self, bucket: str, key: str) -> bool:
        return self._ledger.destination_claimed(self._plan, bucket, key)


def refuse_missing_bucket(plan: Plan, destination: StoreAdapter, bucket: str) -> None:
    """PlanError when `bucket` does not exist at the destination while the plan says its
    buckets must be made as a certification requires (CERTIFICATION_CONDITION): a bucket
    the run made would not be covered."""
    try:
        destination.check(bucket)
    except NotFound:
        finding = next(f for f in plan.findings if f.code == CERTIFICATION_CONDITION)
        raise PlanError(
            f"destination bucket {bucket} does not exist, and the plan's policy needs it made "
            f"as a certification requires: {finding.message.split(': ', 1)[-1]}",
            hint=f"{finding.action}; then run the same command again",
        ) from None


def check_gates(plan: Plan, phase_name: str, ledger: Ledger, force_reason: str | None) -> None:
    """A phase starts only after the phases it requires were verified (or done, for delta
    before cutover), unless forced with a reason that the ledger records."""
    refused = gate_refusal(plan, phase_name, ledger)
    if refused is None:
        return
    if force_reason:
        ledger.phase_mark(plan.name, phase_name, "started_at", reason=force_reason)
        return
    raise refused


def gate_refusal(plan: Plan, phase_name: str, ledger: Ledger) -> PlanError | None:
    """What the phase's gate says without --force (nothing is written): None when open."""
    missing = [
        required
        for required in plan.phase(phase_name).requires
        if ledger.phase_state(plan.name, required).verified_at is None
    ]
    if not missing and plan.phase(phase_name).kind == PhaseKind.CUTOVER:
        # The switch-over needs every phase that copies to have run, not the delta alone:
        # a wave never run (a plan made again with other waves) left the report
        # incomplete after a cutover that passed (a walkthrough).
        unrun = [
            p.name
            for p in plan.phases
            if p.kind not in (PhaseKind.CUTOVER, PhaseKind.DECOMMISSION)
            and ledger.phase_state(plan.name, p.name).resolved_at is None
        ]
        if unrun:
            return PlanError(
                f"phase {phase_name} switches over, and {', '.join(unrun)} never ran",
                hint=f"run `migrate run {plan.command_path} --phase {unrun[0]}` first (a "
                "phase with nothing left to copy ends at once), or pass --force --reason '...'",
            )
    if not missing:
        return None
    first, path = missing[0], plan.command_path
    verify = f"migrate verify {path} --phase {first}"
    if ledger.phase_state(plan.name, first).resolved_at is None:  # not run yet: run it first
        verify = f"migrate run {path} --phase {first}` then `{verify}"
    return PlanError(
        f"phase {phase_name} requires {', '.join(missing)} to be verified first",
        hint=f"run `{verify}`, or pass --force --reason '...'",
    )


def abort_orphan_uploads(
    plan: Plan,
    ledger: Ledger,
    destination: StoreAdapter,
    *,
    call: Callable[[Callable[[], int]], int] = lambda fn: fn(),
    on_skipped: Callable[[str, MigrateError], None] | None = None,
) -> int:
    """Abort unfinished uploads of the destination keys this plan still has to write that
    the ledger does not own (created just before a crash, before their id reached the
    ledger). Not under a key whose copy is done: an upload there is another writer's.

    A bucket's sweep that fails is tried again whole through `call` (the retries: aborted
    uploads are no longer listed); one that still fails is skipped and passed to
    `on_skipped` (credentials allowed to write but not to list uploads, a store without the
    listing): an orphan costs storage, not integrity. A route refused stops the run."""
    if not destination.capabilities.lists_uploads:
        return 0
    aborted = 0
    for bucket in sorted({m.destination_bucket for m in plan.mappings}):

        def sweep(bucket: str = bucket) -> int:
            done = 0
            refused: MigrateError | None = None
            # Aborted as listed: a bucket's uploads are never held in memory at once.
            for upload in destination.list_multipart_uploads(bucket):
                if ledger.is_orphan_upload(plan.name, bucket, upload.key, upload.upload_id):
                    try:
                        destination.abort_multipart(bucket, upload.key, upload.upload_id)
                    except (Permanent, CredentialsRejected, Unsupported) as exc:
                        # This upload's (a policy denying aborts under a prefix): the rest
                        # of the bucket's may go.
                        refused = refused or exc
                        continue
                    done += 1
            if refused is not None:
                raise refused
            return done

        try:
            aborted += call(sweep)
        except RouteRefused:
            raise
        except MigrateError as exc:
            if on_skipped is not None:
                on_skipped(bucket, exc)
    return aborted


# What a later run may get past, with the same upload.
_RECOVERABLE = (
    Retryable,
    EndpointUnreachable,
    CredentialsRejected,
    RouteRefused,
    ConfigError,
    OSError,
)


def _item(
    row: TransferRow,
    ledger: Ledger,
    plan: str,
    classes: Mapping[str, str],
) -> TransferItem:
    checksums = json.loads(row.source_checksums) if row.source_checksums else {}
    # The write expects what the conflict check saw (see migrate/conflicts.py): the key free,
    # or the object it let be replaced, --overwrite or not ('' for one without an ETag, or
    # one that could not be read: no condition possible).
    expect = ABSENT if row.destination_seen is None else row.destination_seen or None
    parts = ledger.done_parts(plan, row.container, row.key, row.upload_id) if row.upload_id else {}
    return TransferItem(
        container=row.container,
        key=row.key,
        size=row.size,
        source_etag=row.source_etag,
        source_version=row.source_version,
        source_checksums=checksums,
        destination_bucket=row.destination_bucket,
        destination_key=row.destination_key,
        upload_id=row.upload_id,
        part_size=row.part_size if row.upload_id else None,
        done_parts={n: md5 for n, (md5, _) in parts.items()},
        part_etags={n: etag for n, (_, etag) in parts.items() if etag},
        storage_classes=classes,
        expect=expect,
    )


def _rows(ledger: Ledger, plan: str, phase: str) -> Iterator[TransferRow]:
    """Keyset pagination: a row that fails in this run is not met again in this run."""
    after: tuple[str, str] | None = None
    while batch := ledger.transfers_to_do(plan, phase, after, BATCH, skip_conflicts=True):
        yield from batch
        after = (batch[-1].container, batch[-1].key)


def run_phase(
    plan: Plan,
    phase_name: str,
    ledger: Ledger,
    source: StoreAdapter,
    destination: StoreAdapter,
    *,
    config: TransferConfig | None = None,
    subscriber: Subscriber | None = None,
    force_reason: str | None = None,
    overwrite: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> PhaseSummary:
    """Copy the phase's objects not done yet. An object already at the destination that
    this plan did not write, with other bytes, is not overwritten (its transfer fails as a
    conflict; see migrate/conflicts.py) unless `overwrite`. `sleep` and `clock`: the
    retries' and the rate limits' (a test's fake ones)."""
    config = config or TransferConfig()
    subscriber = subscriber or Subscriber()
    started = time.monotonic()
    # Before its gate: --force would record a start of a phase no run takes.
    refuse_decommission(plan, plan.phase(phase_name))
    ledger.refuse_other_split(plan, plan.phase(phase_name))
    check_gates(plan, phase_name, ledger, force_reason)
    nothing = finished_already(plan, phase_name, ledger)
    if nothing is not None:
        nothing.seconds = time.monotonic() - started
        return nothing
    made_as_required = any(f.code == CERTIFICATION_CONDITION for f in plan.findings)
    if made_as_required:
        # Before the phase takes its objects (a review: a refusal after left them taken,
        # and the datasets could no longer be left out of the plan).
        for bucket in sorted({m.destination_bucket for m in plan.mappings}):
            try:
                refuse_missing_bucket(plan, destination, bucket)
            except TransferError as exc:
                raise as_store_failure(exc) from None
    total = ledger.resolve_phase(plan, plan.phase(phase_name))
    # Set on Ctrl-C, or once a copy finds a store gone: multipart copies stop between
    # parts, a part not begun is not sent, and a retry's backoff ends at once (each part
    # waited its own retries out: a walkthrough saw a run take a minute to stop).
    stop = RunStop()

    def backoff(seconds: float) -> None:
        if sleep is time.sleep:
            stopped = stop.wait(seconds)
        else:  # a test's clock
            sleep(seconds)
            stopped = stop.is_set()
        if stopped:
            raise Stopped("the run is stopping: not tried again")

    def pause(seconds: float) -> None:
        """A rate limit's wait: cut short once a store is found gone (the request it held
        would not be sent: a walkthrough saw a run at --bwlimit go on for its wait), run
        out on an interrupt alone (the parts under way are sent, at the rate asked)."""
        if sleep is time.sleep:
            stop.failed.wait(seconds)
        else:  # a test's clock
            sleep(seconds)
        if stop.failed.is_set():
            raise Stopped("the run is stopping: not sent")

    retries = _Retries(config, backoff)
    # A HEAD for each object taken and then deleted at the source before its copy.
    if settle_gone(plan, phase_name, ledger, destination, call=retries):
        total = ledger.resolve_phase(plan, plan.phase(phase_name))
    if plan.phase(phase_name).kind in (PhaseKind.DELTA, PhaseKind.CUTOVER):
        # Its re-list saw the source now: the earlier phases' objects deleted there before
        # their copy (one changed or failed mid-run, say) are settled too, else they would
        # hold the cutover until each of those phases ran again.
        for earlier in plan.phases:
            if earlier.name != phase_name and earlier.kind != PhaseKind.DECOMMISSION:
                settle_gone(plan, earlier.name, ledger, destination, call=retries)
    return_large_buffers()
    summary = PhaseSummary(plan.name, phase_name, objects=total)
    counts = {c.state: c for c in ledger.phase_counts(plan.name, phase_name)}
    summary.already_done = counts["done"].objects if "done" in counts else 0
    summary.deleted_at_source = counts["removed"].objects if "removed" in counts else 0
    summary.left_changed = counts["changed"].objects if "changed" in counts else 0
    todo_bytes = sum(c.bytes for s, c in counts.items() if s not in ("done", "changed", "removed"))
    ledger.phase_mark(plan.name, phase_name, "started_at")
    for bucket in sorted({m.destination_bucket for m in plan.mappings}):
        if made_as_required:
            continue  # each found there above: the run makes none
        try:
            destination.create_container(bucket)
        except TransferError as exc:  # no object has failed: the store has (exit 6, not 11)
            raise as_store_failure(exc) from None
    for bucket, key, upload in ledger.take_dropped_uploads():
        try:
            retries(partial(destination.abort_multipart, bucket, key, upload))
        except RouteRefused:
            raise
        except MigrateError:
            pass  # the sweep below is the fallback
    abort_orphan_uploads(
        plan,
        ledger,
        destination,
        call=retries,
        on_skipped=lambda bucket, exc: summary.unswept.append(f"{bucket}: {exc}"),
    )
    # Composed once per endpoint: request rate, bandwidth, and a concurrency limit that
    # halves when the store throttles and grows back as requests succeed.
    source_limit = AdaptiveLimit(config.concurrency * 2)
    destination_limit = AdaptiveLimit(config.concurrency * 2)
    source = LimitedAdapter(
        source,
        concurrency=source_limit,
        max_rps=config.max_rps,
        clock=clock,
        sleep=pause,
        stall_after=config.stall_after,
    )
    destination = LimitedAdapter(
        destination,
        concurrency=destination_limit,
        max_rps=config.max_rps,
        bwlimit=config.bwlimit,
        clock=clock,
        sleep=pause,
        stall_after=config.stall_after,
    )
    # Through the limits: on a large estate this is a listing of the destination.
    conflicts = mark_conflicts(
        plan,
        phase_name,
        ledger,
        destination,
        call=retries,
        overwrite=overwrite,
        workers=config.concurrency,
    )
    summary.conflicts = summary.failed = conflicts.objects
    if conflicts.objects:
        subscriber.on_conflicts(conflicts.objects, found_before=True)
    summary.overwriting = conflicts.overwriting
    summary.same_bytes_replaced = conflicts.same_bytes
    subscriber.on_start(
        total
        - summary.already_done
        - summary.deleted_at_source
        - summary.left_changed  # the delta's: this run copies none of them
        - conflicts.objects,
        todo_bytes - conflicts.bytes,
    )
    classes = {m.dataset: m.storage_classes for m in plan.mappings}
    # Parts of large objects go to their own threads, so one large object (a pilot, the
    # last blob of a wave) is not a single read-then-send stream.
    part_senders = ThreadPoolExecutor(
        max_workers=config.concurrency, thread_name_prefix="migrate-part"
    )
    # And when part buffers are free, the next parts of an object are read ahead.
    part_readers = ThreadPoolExecutor(
        max_workers=config.concurrency, thread_name_prefix="migrate-read"
    )
    copier = ObjectCopy(
        source,
        destination,
        _LedgerRecorder(ledger, plan.name),
        part_size=config.part_size,
        call=retries,
        on_bytes=subscriber.on_bytes,
        uploads=part_senders,
        buffers=PartBuffers(config.buffers or config.concurrency, config.part_size),
        sha256_metadata=plan.options.sha256_on_large_objects,
        reads=part_readers,
        stop=stop,
    )
    lock = threading.Lock()

    def work(row: TransferRow) -> None:
        retries.start()
        item = _item(row, ledger, plan.name, classes.get(row.dataset, {}))
        # An object sent in one request is cheap to send again: its records are committed
        # in groups (a kill -9 may forget the last group; those objects are copied again).
        group = copier.one_request(item)
        # Each attempt counted once; a resumed upload keeps its id and part size.
        ledger.transfer_started(
            plan.name, row.container, row.key, item.upload_id, item.part_size, group=group
        )
        try:
            outcome: TransferOutcome = copier.copy(item)
        except SourceChanged as exc:
            _abandon(item)
            ledger.transfer_not_done(
                plan.name, row.container, row.key, "changed", exc.one_line(), retries.take()
            )
            with lock:
                summary.changed += 1
            subscriber.on_object(row.key, "changed")
            return
        except WriteConflict as exc:
            # As the conflict check would have found it: left as it is, the upload kept
            # for when the key is free (or --overwrite).
            ledger.transfer_not_done(
                plan.name,
                row.container,
                row.key,
                "failed",
                f"{CONFLICT}{exc.one_line()}",
                retries.take(),
                keep_upload=_recorded_upload(item) is not None,
            )
            with lock:
                summary.failed += 1
                summary.conflicts += 1
            subscriber.on_conflicts(1, found_before=False)
            subscriber.on_object(row.key, "failed")
            return
        except SITE_WIDE:
            # Every object would fail the same way (a store gone past the retries): the run
            # stops, this object left as a kill leaves it (its upload kept), and the same
            # command resumes once the store answers again.
            raise
        except (MigrateError, OSError) as exc:
            if isinstance(exc, MigrateError):
                reason = exc.one_line()
            else:
                reason = f"I/O error: {redact(str(exc))}"
            upload = _recorded_upload(item)
            # The parts of an upload stopped by an outage, or by credentials, a route or a
            # setting to mend, are kept for the next run (begun by this run or an earlier
            # one: a 5 TiB copy is not started over). Anything else (bytes in dispute, a
            # refusal that would come again, the source object gone: a later run settles
            # it only without an upload) leaves nothing partial.
            keep = upload is not None and isinstance(exc, _RECOVERABLE)
            if upload is not None and not keep:
                _abandon(item, upload)
            ledger.transfer_not_done(
                plan.name,
                row.container,
                row.key,
                "failed",
                reason,
                retries.take(),
                keep_upload=keep,
            )
            with lock:
                summary.failed += 1
            subscriber.on_object(row.key, "failed")
            return
        n = retries.take()
        ledger.transfer_done(
            plan.name,
            row.container,
            row.key,
            sha256=outcome.sha256,
            md5=outcome.md5,
            destination_etag=outcome.destination_etag,
            source_proof=outcome.source_proof,
            retries=n,
            group=group,
            overwriting=row.overwriting,
            tags=outcome.tags,
        )
        with lock:
            summary.copied += 1
            summary.bytes_copied += outcome.size
            summary.bytes_sent += outcome.sent_bytes
            summary.retries += n
        subscriber.on_object(row.key, "done")

    def _recorded_upload(item: TransferItem) -> str | None:
        """The upload the ledger holds for the object's destination key, if any."""
        return ledger.upload_of(plan.name, item.destination_bucket, item.destination_key)

    def _abandon(item: TransferItem, upload: str | None = None) -> None:
        """Drop the upload of an object that will not complete now: nothing partial stays."""
        upload = upload or _recorded_upload(item)
        if upload:
            with suppress(MigrateError):  # else the orphan sweep of the next run aborts it
                destination.abort_multipart(item.destination_bucket, item.destination_key, upload)

    with part_senders, part_readers:
        rows = _rows(ledger, plan.name, phase_name)  # not the conflicts just found
        _each_on_workers(rows, work, config.concurrency, stop, subscriber.on_stopping)

    summary.unguarded = copier.unguarded
    summary.failures = ledger.failures(plan.name, phase_name)
    summary.throttled = source_limit.throttled + destination_limit.throttled
    summary.lowest_requests_in_flight = min(source_limit.lowest, destination_limit.lowest)
    if summary.failed == 0 and summary.changed == 0:
        ledger.phase_mark(plan.name, phase_name, "finished_at")
    summary.seconds = time.monotonic() - started
    return summary


_INTERRUPTS = {signal.SIGINT, signal.SIGTERM}


def _hold_interrupts() -> set[signal.Signals] | None:
    """Block Ctrl-C and SIGTERM for this thread (delivered once released): the previous
    mask, or None where signals cannot be masked."""
    mask = getattr(signal, "pthread_sigmask", None)
    return None if mask is None else mask(signal.SIG_BLOCK, _INTERRUPTS)


def _release_interrupts(previous: set[signal.Signals] | None) -> None:
    if previous is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _each_on_workers(
    rows: Iterator[TransferRow],
    work: Callable[[TransferRow], None],
    n: int,
    stop: RunStop | None = None,
    on_stopping: Callable[[], None] = lambda: None,
) -> None:
    """`work(row)` for every row, on `n` threads that each take the next row when done
    with theirs. A small object is a few milliseconds of work: handing each one to a pool
    and waiting for its future woke the main thread, and took its own locks, for every
    object (0.3-0.4 ms of CPU each, a seventh of a small object's copy). The first error
    stops the others from taking new rows and sets `stop`, and is raised once all have
    stopped; so is an interrupt of the main thread, which also sets `stop`: a request under
    way finishes, a multipart copy stops before its next part, a retry is not made (the
    next run resumes them)."""
    take = threading.Lock()
    errors: list[BaseException] = []
    # Waited for on a condition, not by Thread.join: a join that an interrupt cut short
    # marks its thread stopped (CPython 3.11), so the next join returned at once and the
    # process exited with a copy under way, its record never written.
    running = [0]
    ended = threading.Condition()

    def worker() -> None:
        try:
            # A copy may have decided the run stops (a store gone) while its object was
            # recorded failed for another reason: no row is taken after that.
            while not errors and not (stop is not None and stop.is_set()):
                with take:
                    row = next(rows, None)  # the ledger read, too, may fail
                if row is None:
                    return
                work(row)
        except BaseException as exc:
            errors.append(exc)
            if stop is not None:  # the run stops: the copies under way stop retrying
                if isinstance(exc, Stopped):
                    stop.set()
                else:
                    stop.stop_for(exc)
        finally:
            with ended:
                running[0] -= 1
                ended.notify_all()

    def wait_all() -> None:
        with ended:
            while running[0]:
                ended.wait()

    threads = [threading.Thread(target=worker, name=f"migrate-copy-{i}") for i in range(n)]
    try:
        # Ctrl-C and SIGTERM held back while the threads start (an interrupt inside
        # Thread.start left one started but uncounted, or counted twice); they land after.
        held = _hold_interrupts()
        try:
            for t in threads:
                t.start()
                with ended:
                    running[0] += 1
        finally:
            _release_interrupts(held)
        wait_all()
    except BaseException as exc:  # the main thread interrupted (KeyboardInterrupt)
        errors.append(exc)
        if stop is not None:
            stop.set()
        with suppress(Exception):  # said at once: the wait may be long (a slow store)
            on_stopping()
        while True:  # a second Ctrl-C: the copies under way still finish (kill -9 does not)
            try:
                wait_all()
                break
            except KeyboardInterrupt:
                continue
        raise
    # What stopped the run, not a copy that stopped because it did (a retry cut short may
    # be recorded before the error that set `stop`, or instead of it).
    cause = next((e for e in errors if not isinstance(e, Stopped)), None)
    if cause is None and stop is not None:
        cause = stop.cause
    if cause is not None:
        raise cause
    if errors:
        raise errors[0]

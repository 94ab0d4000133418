"""Verify a plan's destination against the ledger (and, with `deep="both"`, the source; with
`check_metadata`, the source's metadata where its listing carried none).

What one verification proves, object by object, for the transfers in scope (a phase, or
the whole plan):
- presence and size: the destination lists every done object with the ledger's size, and
  nothing else under the plan's destination prefixes (`unexpected`);
- stored checksums, without reading bytes: an MD5-shaped ETag (`hex` or `hex-N`) must equal
  the MD5 the ledger recorded from the source bytes (or, for parts sent with their SHA-256
  alone, the part MD5s the store answered with the SHA-256 it verified: the ETag then says
  the object is still the one whose parts were proven); where the ETag carries no hash (Azure,
  a local directory) the object's stored checksums (Content-MD5, the `migrate-sha256`
  metadata written with single PUTs) must equal the ledger's. An object with no stored
  checksum passes only if its ETag is still the one the copy was verified against; else
  its bytes are re-read;
- content type, user metadata and the other headers a copy keeps (cache control, content
  disposition, language, encoding, Expires), where they are at hand (a listing that
  carries them or a HEAD made anyway), against the source's inventory (or the source's
  HEAD with `deep="both"`, or with `check_metadata` where its listing carried none: S3's);
- the object's tags against those its copy set (with `deep="both"`, against the source's
  as they are now: a tag change moves neither an ETag nor a time, so no delta sees it);
- with `deep` (every object) or `sample` (a seeded share of them): the destination's bytes
  re-read and their SHA-256 compared with the ledger's; with `deep="both"` the source's too,
  read conditionally on the ETag seen when copied.

Each object gives at most one finding, of a kind in `FINDING_KINDS`. Every kind fails the
verification except `source_changed`: a source that changed since its copy is the delta
phase's work, reported but not held against the copy.

Memory is bounded: the destination listing and the ledger's transfers are both streamed in
key order and merged, a bounded number of re-reads run at once, and only the first
`max_findings` findings are kept (every finding is counted).

A passing verification records `verified_at` on the phases it proved (which opens the
executor's phase gates); a failing one clears it on the phases whose objects it found
wrong at the destination (missing, other size, bytes or metadata): such a phase is not
verified any more. Every verification is recorded in the ledger with its seed.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal, TypeVar

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from migrate import os_user, tool_version
from migrate.errors import (
    ConfigError,
    CredentialsRejected,
    EndpointUnreachable,
    MigrateError,
    NoAnswer,
    NotFound,
    Permanent,
    PlanError,
    Retryable,
    SourceChanged,
    Unsupported,
)
from migrate.keys import portable_key
from migrate.ledger import BY_HAND, DestinationRow, Ledger, dumps
from migrate.plan import PhaseKind, Plan, check_same_routes, destination_prefixes
from migrate.transfer import SHA256_METADATA, carried_metadata
from providers.base import (
    CARRIED_HEADERS,
    ObjectInfo,
    StoreAdapter,
    carried_headers,
    expires_instant,
)

T = TypeVar("T")

FindingKind = Literal[
    "missing",
    "unexpected",
    "size_mismatch",
    "checksum_mismatch",
    "unreadable",
    "metadata_mismatch",
    "not_done",
    "source_changed",
    "outside_plan",
    "store_altered",
]
FINDING_KINDS: tuple[FindingKind, ...] = (
    "missing",
    "unexpected",
    "size_mismatch",
    "checksum_mismatch",
    "unreadable",
    "metadata_mismatch",
    "not_done",
    "source_changed",
    "outside_plan",
    "store_altered",
)
# A changed source is the delta's work: reported, not held against the copy. What the
# destination store alters at every write (the generic content type replaced by one it
# guesses) no copy can avoid: reported, each object named, not held against the copy.
NON_FAILING: frozenset[str] = frozenset({"source_changed", "store_altered"})
# What the destination holds is wrong: the phase of that object is not verified any more.
# (`not_done` is a phase unfinished, not wrong; `unexpected` belongs to no phase.)
WRONG_CONTENT: frozenset[str] = frozenset(
    {"missing", "size_mismatch", "checksum_mismatch", "unreadable", "metadata_mismatch"}
)
# What a store may alter on every write (a proxy dropping some header names, a store
# rewriting values): found again, word for word, after the copy verify asked for, it is
# not marked to copy again (each verify and run would otherwise copy it forever).
LASTING: frozenset[str] = frozenset({"metadata_mismatch"})
_GENERIC_TYPE = "application/octet-stream"  # RFC 2046's type for bytes of no known kind


def _guessable(key: str, chosen: str) -> bool:
    """Whether `chosen` may be a store's guess from the key's name: the type the name's
    extension maps to, where one is known (an audit: text/html put by another writer over
    a .json's generic type passed as the store's doing)."""
    guess, _ = mimetypes.guess_type(key, strict=False)
    return guess is None or chosen.split(";")[0].strip().lower() == guess.lower()


def _gone_after_cut(head: Callable[[], object], cut: NoAnswer) -> bool:
    """After a read cut at every try (`cut`): a HEAD of the object tells the store silent
    (`cut` raised: no object's finding) from the object gone (True) or this object's body
    alone failing while the store answers (False: unreadable)."""
    try:
        head()
    except NotFound:
        return True
    except (NoAnswer, EndpointUnreachable):
        raise cut from None
    except MigrateError:
        pass  # an answer (a refusal too): the store is there
    return False


def _recopy_reason(kind: str, detail: str) -> str:
    """The reason a transfer is marked to copy again (kept, and compared next time)."""
    return f"verify found it {kind.replace('_', ' ')}: {detail}"


Deep = bool | Literal["both"]
_MD5_SHAPED = re.compile(r"^[0-9a-f]{32}(-\d+)?$")
_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class VerifyFinding:
    """One problem with one object: `bucket` and `key` at the destination. `source` is
    "container/key" at the source when the ledger knows the object, also given apart
    (`source_container`, `source_key`: the names `status --failed` gives a script to join
    on); `phase` is the transfer's phase. An `outside_plan` finding is of a source dataset
    (`source`), with no destination object (`bucket` and `key` "")."""

    kind: FindingKind
    bucket: str
    key: str
    detail: str
    source: str | None = None
    phase: str | None = None
    source_container: str | None = None
    source_key: str | None = None

    @property
    def failing(self) -> bool:
        return self.kind not in NON_FAILING


@dataclass(frozen=True, slots=True)
class VerifyResult:
    plan: str
    phase: str | None  # None: every phase of the plan
    mode: str  # "stored", "deep" or "deep-both"
    sample: float | None  # share re-read when not deep
    seed: int  # decides which objects the sample takes: recorded, so it can be replayed
    started_at: str
    finished_at: str
    objects: int  # done objects checked
    bytes: int
    listed: int  # destination objects listed under the plan's prefixes
    heads: int  # HEAD requests made
    # objects whose content type, headers and user metadata were compared with the source's
    # (the others: their metadata unknown at one end: an S3 listing carries none; see
    # `check_metadata`)
    metadata_compared: int
    reread: int  # objects whose destination bytes were re-read
    reread_bytes: int
    source_reread: int
    source_reread_bytes: int
    counts: dict[str, int]  # findings by kind (all of them, kept or not)
    # the first `max_findings`: those that fail the verification first, then the others,
    # each in key order
    findings: tuple[VerifyFinding, ...]
    # Objects found wrong at the destination, marked for their phase's next run to copy again.
    to_copy_again: int
    verified_phases: tuple[str, ...]  # phases marked verified (empty unless passed)
    record_id: int = 0  # the ledger's verification record
    # Passing, yet not marked: the cutover, while the source holds datasets outside the plan.
    held_back: tuple[str, ...] = ()
    # Phases with objects not copied yet (`not_done`), in the plan's order: all of them, even
    # past `max_findings`.
    unfinished: tuple[str, ...] = ()
    # Of `to_copy_again`: their source deleted since (the latest inventory), so no run can
    # copy them again: it leaves them at the destination, unproven.
    gone_at_source: int = 0
    # --metadata was given: every object's metadata was to be compared (`metadata_compared`
    # says of how many it could be: not those changed at the source since their copy)
    metadata_asked: bool = False
    # Phases whose verified mark this verification removed (objects of theirs found wrong;
    # a held-back cutover): a failure of another kind (`unexpected` alone) removes none.
    unverified_phases: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not any(n for kind, n in self.counts.items() if kind not in NON_FAILING)

    @property
    def truncated(self) -> int:
        return sum(self.counts.values()) - len(self.findings)

    def summary(self, first: int = 100) -> dict[str, object]:
        """What the ledger keeps of this verification: counters and the first findings."""
        data = {k: v for k, v in asdict(self).items() if k not in ("findings", "record_id")}
        if self.sample is None:
            data["seed"] = None  # it took no sample: a seed would suggest one (as the report)
        data["passed"] = self.passed
        data["findings"] = [asdict(f) for f in self.findings[:first]]
        return data


@dataclass
class _Tally:
    max_findings: int
    objects: int = 0
    bytes: int = 0
    listed: int = 0
    heads: int = 0
    metadata_compared: int = 0
    reread: int = 0
    reread_bytes: int = 0
    source_reread: int = 0
    source_reread_bytes: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    findings: list[VerifyFinding] = field(default_factory=list)  # failing ones
    # Those that fail nothing (store_altered, ...), kept apart: thousands of them must not
    # crowd out the one finding that fails the verification.
    informing: list[VerifyFinding] = field(default_factory=list)
    wrong_phases: set[str] = field(default_factory=set)  # phases of WRONG_CONTENT findings
    unfinished: set[str] = field(default_factory=set)  # phases of `not_done` findings
    to_copy_again: int = 0  # done transfers found wrong at the destination, back to pending
    gone_at_source: int = 0  # of those, their source deleted since
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, finding: VerifyFinding) -> None:
        with self.lock:
            self.counts[finding.kind] = self.counts.get(finding.kind, 0) + 1
            if finding.kind in WRONG_CONTENT and finding.phase is not None:
                self.wrong_phases.add(finding.phase)
            if finding.kind == "not_done" and finding.phase is not None:
                self.unfinished.add(finding.phase)
            kept = self.findings if finding.failing else self.informing
            if len(kept) < self.max_findings:
                kept.append(finding)

    def kept(self) -> tuple[VerifyFinding, ...]:
        """The findings kept, the failing ones first (each part in key order), at most
        `max_findings`."""

        def order(f: VerifyFinding) -> tuple[str, str, str]:
            return (f.bucket, f.key, f.kind)

        ordered = sorted(self.findings, key=order) + sorted(self.informing, key=order)
        return tuple(ordered[: self.max_findings])

    def bump(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + n)


def _found_wrong(plan: Plan, tally: _Tally) -> tuple[str, ...]:
    """The phases a failed verification takes the mark from. Only a phase whose objects
    are found wrong: an unfinished one (a failure, Ctrl-C) keeps what was proven of it, and
    the gates after it stay open. And the cutover, whichever phase's objects are wrong (or
    a dataset is outside the plan): its mark says the whole estate may switch over."""
    wrong = set(tally.wrong_phases)
    if wrong or tally.counts.get("outside_plan"):
        wrong |= {p.name for p in plan.phases if p.kind == PhaseKind.CUTOVER}
    return tuple(sorted(wrong))


def _decisive(got: str, want: str) -> bool:
    """Whether comparing two MD5-shaped values decides: always when they are equal; when
    they differ, only for two whole-object MD5s. A multipart MD5 depends on the part size,
    which it does not record, so a difference involving one is settled by the bytes."""
    return got == want or ("-" not in got and "-" not in want)


def sampled(seed: int, bucket: str, key: str, share: float) -> bool:
    """Whether a sample of `share` with `seed` takes this object: a hash of seed, bucket and
    key, so the same seed takes the same objects whatever the listing's pace or order."""
    if share >= 1:
        return True
    return _sample_point(seed, bucket, key) < share * 2**64


def _sample_point(seed: int, bucket: str, key: str) -> int:
    data = f"{seed}\0{bucket}\0{key}".encode("utf-8", "surrogateescape")
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big")


class _Verifier:
    def __init__(
        self,
        plan: Plan,
        ledger: Ledger,
        source: StoreAdapter,
        destination: StoreAdapter,
        *,
        phase: str | None,
        deep: Deep,
        sample: float | None,
        seed: int,
        concurrency: int,
        check_metadata: bool,
        copy_again: bool,
        tally: _Tally,
        sleep: Callable[[float], None],
    ) -> None:
        self.plan = plan
        self.ledger = ledger
        self.source = source
        self.destination = destination
        self.phase = phase
        self.deep = deep
        self.share = 1.0 if deep else (sample or 0.0)
        self.seed = seed
        self.concurrency = concurrency
        self.check_metadata = check_metadata
        self.copy_again = copy_again
        self.tally = tally
        self.sleep = sleep
        # The object a sample takes when its share takes none (a small phase): the lowest
        # sample point, so the same seed takes the same one.
        self.fallback: tuple[int, DestinationRow, bool] | None = None

    # -- I/O with retries --------------------------------------------------------------

    def call(self, fn: Callable[[], T]) -> T:
        retrying = Retrying(
            retry=retry_if_exception_type(Retryable),
            wait=wait_exponential_jitter(initial=0.2, max=10),
            stop=stop_after_attempt(6),
            sleep=self.sleep,
            reraise=True,
        )
        return retrying(fn)

    def read_hash(
        self,
        store: StoreAdapter,
        container: str,
        key: str,
        *,
        if_match: str | None = None,
        version_id: str | None = None,
    ) -> tuple[int, str]:
        """Size and SHA-256 of an object's bytes, streamed (one chunk in memory)."""

        def read() -> tuple[int, str]:
            stream = store.open_range(container, key, if_match=if_match, version_id=version_id)
            digest = hashlib.sha256()
            size = 0
            try:
                while chunk := stream.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
            finally:
                stream.close()
            return size, digest.hexdigest()

        return self.call(read)

    def head(self, bucket: str, key: str) -> ObjectInfo:
        self.tally.bump("heads")
        return self.call(lambda: self.destination.head(bucket, key))

    # -- the merge ---------------------------------------------------------------------

    def listing(self, bucket: str, prefixes: list[str]) -> Iterator[ObjectInfo]:
        """The destination's objects under `prefixes`, checked to come in key order (the
        merge depends on it); a bucket that does not exist lists nothing."""
        last: str | None = None
        for prefix in prefixes:
            try:
                for obj in self.destination.list_objects(bucket, prefix):
                    if last is not None and obj.key <= last:
                        raise Permanent(
                            f"{self.destination.site_name}: listing of {bucket} not in key "
                            f"order at {obj.key!r}: cannot verify by merging"
                        )
                    last = obj.key
                    yield obj
            except NotFound:
                if last is not None:
                    raise
                return

    def run(self, pool: ThreadPoolExecutor) -> None:
        running: set[Future[None]] = set()

        def submit(fn: Callable[[], None]) -> None:
            nonlocal running
            if len(running) >= self.concurrency * 2:
                done, running = _wait_some(running)
                for f in done:
                    f.result()
            running.add(pool.submit(fn))

        for bucket, prefixes in destination_prefixes(self.plan).items():
            rows = self.ledger.destination_rows(self.plan.name, self.plan.source, bucket)
            objects = self.listing(bucket, prefixes)
            obj = next(objects, None)
            row = next(rows, None)
            while obj is not None or row is not None:
                if row is None or (obj is not None and obj.key < row.destination_key):
                    assert obj is not None
                    self.tally.bump("listed")
                    self.tally.add(
                        VerifyFinding(
                            "unexpected",
                            bucket,
                            obj.key,
                            f"{obj.size} bytes under the plan's destination prefixes that "
                            "no transfer of the plan wrote",
                        )
                    )
                    obj = next(objects, None)
                elif obj is None or row.destination_key < obj.key:
                    self.check(row, None, submit)
                    row = next(rows, None)
                else:
                    self.tally.bump("listed")
                    key = obj.key
                    while row is not None and row.destination_key == key:
                        self.check(row, obj, submit)
                        row = next(rows, None)
                    obj = next(objects, None)
        for f in running:
            f.result()
        if self.fallback and not self.tally.reread and not self.tally.counts:
            # A sample re-reads at least one object: else its record proves no byte.
            _, row, md5_shaped = self.fallback
            self.slow(row, md5_shaped, True)

    # -- one object --------------------------------------------------------------------

    @property
    def catching(self) -> list[str]:
        """The plan's phases that copy what changed at the source (delta, cutover)."""
        kinds = (PhaseKind.DELTA, PhaseKind.CUTOVER)
        return [p.name for p in self.plan.phases if p.kind in kinds]

    @property
    def leaves_changes(self) -> bool:
        """Whether objects changed at the source are left to the delta: the verification of
        one phase that is not a cutover, of a plan with a phase to copy them."""
        return (
            self.phase is not None
            and self.plan.phase(self.phase).kind != PhaseKind.CUTOVER
            and bool(self.catching)
        )

    def in_scope(self, row: DestinationRow) -> bool:
        return self.phase is None or row.phase == self.phase

    def check(
        self,
        row: DestinationRow,
        obj: ObjectInfo | None,
        submit: Callable[[Callable[[], None]], None],
    ) -> None:
        if not self.in_scope(row):
            return  # another phase's object: known, not this verification's business
        if row.state == "removed":
            # Deleted at the source, then at the destination on request (delta): it must be
            # gone; if it is still there it is unexpected.
            if obj is not None:
                detail = "deleted at the source and removed by the delta, yet still present"
                if row.error and BY_HAND in row.error:
                    detail = row.error  # left there, not removed: it says why
                self.finding(row, "unexpected", detail)
            elif row.error and BY_HAND in row.error:
                # Left there to be removed by hand, and removed: the report's open item goes.
                self.ledger.left_gone(self.plan.name, row.container, row.key)
            return
        if row.state != "done":
            why = f": {row.error}" if row.error else ""
            if row.state == "changed" and self.leaves_changes:
                # Changed at the source during its copy: the delta's work (the run said so),
                # not held against this phase; its gate opens. A cutover's (or the whole
                # plan's) verification says whether the estate may switch over: it is.
                self.finding(
                    row,
                    "source_changed",
                    f"changed at the source{why}: {' or '.join(self.catching)} copies it",
                )
                return
            self.finding(row, "not_done", f"transfer is {row.state}{why}")
            return
        self.tally.bump("objects")
        self.tally.bump("bytes", row.size)
        if obj is None:
            self.finding(row, "missing", f"not at the destination ({row.size} bytes expected)")
            return
        if obj.size != row.size:
            self.finding(row, "size_mismatch", f"{obj.size} bytes, the ledger says {row.size}")
            return
        reread = self.share > 0 and sampled(self.seed, row.destination_bucket, obj.key, self.share)
        etag = (obj.etag or "").lower()
        md5_shaped = bool(_MD5_SHAPED.match(etag))
        if 0 < self.share < 1 and not reread:
            point = _sample_point(self.seed, row.destination_bucket, obj.key)
            if self.fallback is None or point < self.fallback[0]:
                self.fallback = (point, row, md5_shaped)
        if md5_shaped and row.md5 and etag != row.md5:
            if etag == (row.destination_etag or "").lower():
                pass  # the ETag the store gave when the copy wrote the SHA-256 (AWS: an MD5)
            elif _decisive(etag, row.md5):
                self.finding(
                    row, "checksum_mismatch", f"ETag {etag}, the ledger's MD5 is {row.md5}"
                )
                return
            else:  # rewritten in another number or size of parts: only the bytes can tell
                reread = True
        need_head = (
            reread
            or self.check_metadata
            or (not md5_shaped and obj.metadata is None)
            or row.tags is not None  # no listing carries tags: read them (slow)
        )
        if not need_head:
            if md5_shaped:  # the ETag is the MD5 the ledger holds: proven without a request
                if obj.metadata is not None:
                    self.metadata(row, obj, None)
                return
            # The listing carries metadata and checksums (Azure): no request needed.
            problem = self.stored(row, obj)
            if problem is None:
                self.metadata(row, obj, None)
            if problem != "unproven":
                return
            reread = True
        submit(lambda: self.slow(row, md5_shaped, reread))

    def slow(self, row: DestinationRow, md5_shaped: bool, reread: bool) -> None:
        """Checks that need requests: a HEAD, then re-reads."""
        try:
            info = self.head(row.destination_bucket, row.destination_key)
        except NotFound:
            self.finding(row, "missing", "listed, but gone when read")
            return
        if info.size != row.size:
            self.finding(row, "size_mismatch", f"{info.size} bytes, the ledger says {row.size}")
            return
        if not md5_shaped:
            problem = self.stored(row, info)
            if problem == "mismatch":
                return
            if problem == "unproven":
                reread = True  # no stored checksum and rewritten since the copy
        if reread and not self.reread(row):
            return
        source_info = None
        if self.deep == "both" and reread:
            source_info = self.reread_source(row)
            if source_info is None:
                return
            # Tags changed at the source change neither its ETag nor its time: no delta
            # sees it. Read from the source, they are what the copy must bear now.
            try:
                want, unread = self.source_tags(row, source_info)
            except NotFound:
                self.finding(row, "source_changed", "source object deleted since its copy")
                return
            if unread:
                # Still held to the tags its copy set: lost ones are known wrong.
                lost, read = self.tag_differences(row)
                self.metadata(row, info, source_info, [*unread, *lost], read and bool(lost),
                              compared=row.tags is not None)  # fmt: skip
                return
            self.metadata(row, info, source_info, *self.tag_differences(row, want),
                          compared=bool(want) or row.tags is not None)  # fmt: skip
            return
        if self.check_metadata and row.metadata is None:
            # The source's listing carried no metadata (S3): --metadata asked for it, so it
            # is read from the source (a HEAD), else none would be compared at all.
            source_info = self.source_as_copied(row)
        self.metadata(row, info, source_info, *self.tag_differences(row),
                      compared=row.tags is not None)  # fmt: skip

    def source_as_copied(self, row: DestinationRow) -> ObjectInfo | None:
        """The source object's HEAD while it is the one copied (same ETag); None when it
        changed or is gone since (the delta copies or reports it: nothing to compare), or
        cannot be read (credentials that may not read it, a store refusing: its metadata is
        not compared, which the count of those compared shows; the others still are)."""
        self.tally.bump("heads")
        try:
            info = self.call(lambda: self.source.head(row.container, row.key))
        except (NotFound, Permanent, CredentialsRejected, Unsupported):
            return None
        etag = (info.etag or "").lower()  # adapters give ETags without their quotes
        return info if etag and etag == (row.source_etag or "").lower() else None

    def source_tags(
        self, row: DestinationRow, source: ObjectInfo
    ) -> tuple[dict[str, str], list[str]]:
        """The source object's tags now (`--deep=both`); else what could not be read of
        them. Read whatever the source's HEAD said of their count: it need not say (AWS's
        does not), and tags added since the copy are tags to carry too. Credentials that
        may not read them, where neither the HEAD nor the copy saw any, are no finding: the
        copy needed no such right either."""
        try:
            return self.call(
                lambda: self.source.read_tags(row.container, row.key, version_id=row.source_version)
            ), []
        except Unsupported:
            return {}, []  # a store without object tags: none to carry
        except (Permanent, CredentialsRejected) as exc:
            if not source.tags and not json.loads(row.tags or "{}"):
                return {}, []
            return {}, [f"the source's tags could not be read ({exc.message})"]

    def tag_differences(
        self, row: DestinationRow, source: dict[str, str] | None = None
    ) -> tuple[list[str], bool]:
        """The destination's tags against the source's (`source`, read now) or else those
        the copy set (none where it set none), and whether they could be read: tags that
        cannot be read are not known wrong, and a copy again would not make them readable.
        None wanted where the copy recorded none (an older version's copy): not read."""
        want: dict[str, str] = source if source is not None else json.loads(row.tags or "{}")
        if not want and row.tags is None:
            return [], True
        try:
            got = self.call(
                lambda: self.destination.read_tags(row.destination_bucket, row.destination_key)
            )
        except Unsupported as exc:
            if not want:
                return [], True  # a store without object tags bears none, as wanted
            return [f"its tags could not be read ({exc.message})"], False
        except (Permanent, CredentialsRejected) as exc:
            hint = (
                "; grant verify's credentials the right to read object tags "
                "(S3: s3:GetObjectTagging)"
                if isinstance(exc, CredentialsRejected)
                else ""
            )
            return [f"its tags could not be read ({exc.message}){hint}"], False
        except NotFound:
            return ["its tags could not be read (the object was gone)"], False
        return [
            f"tag {name!r} is {got.get(name)!r}, the source's is {want.get(name)!r}"
            for name in sorted(want.keys() | got.keys())
            if got.get(name) != want.get(name)
        ], True

    def stored(self, row: DestinationRow, info: ObjectInfo) -> str | None:
        """Compare the stored checksums of an object whose ETag is no hash. Returns None
        (proven), "mismatch" (a finding was made) or "unproven" (nothing comparable, and
        the ETag changed since the copy: only its bytes can tell)."""
        compared = []
        md5 = (info.checksums.get("md5") or "").lower()
        if md5 and row.md5 and _decisive(md5, row.md5):
            compared.append(("stored MD5", md5, row.md5))
        sha = (info.checksums.get("sha256") or "").lower()
        meta = {k.lower(): v for k, v in (info.metadata or {}).items()}
        sha = sha or meta.get(SHA256_METADATA, "").lower()
        if sha and row.sha256:
            compared.append(("stored SHA-256", sha, row.sha256))
        for what, got, want in compared:
            if got != want:
                self.finding(row, "checksum_mismatch", f"{what} {got}, the ledger's is {want}")
                return "mismatch"
        if compared:
            return None
        if info.etag and row.destination_etag and info.etag == row.destination_etag:
            return None  # the very object whose write was verified
        return "unproven"

    def reread(self, row: DestinationRow) -> bool:
        """Re-read the destination's bytes; True when they match the ledger."""
        try:
            size, sha = self.read_hash(
                self.destination, row.destination_bucket, row.destination_key
            )
        except NotFound:
            self.finding(row, "missing", "listed, but gone when read")
            return False
        except NoAnswer as exc:
            # The store silent, or this object's body cut at every try while the store
            # answers (SeaweedFS failing its own checksum on a later chunk: an audit saw
            # every deep verify stop there, exit 6, nothing recorded). A HEAD of it tells.
            if _gone_after_cut(lambda: self.head(row.destination_bucket, row.destination_key), exc):
                self.finding(row, "missing", "listed, but gone when read")
                return False
            self.finding(
                row,
                "unreadable",
                f"its bytes could not be read, the body cut at every try while the store "
                f"answers: {exc.one_line()}",
            )
            return False
        except (Retryable, Permanent) as exc:
            # This object's bytes cannot be read back (a store failing its own checksum
            # answers 500 to every try): not proven, and no reason to stop the others'.
            self.finding(row, "unreadable", f"its bytes could not be read: {exc.one_line()}")
            return False
        self.tally.bump("reread")
        self.tally.bump("reread_bytes", size)
        if size != row.size:
            self.finding(row, "size_mismatch", f"read {size} bytes, the ledger says {row.size}")
            return False
        if sha != row.sha256:
            self.finding(
                row,
                "checksum_mismatch",
                f"bytes read hash to SHA-256 {sha}, the ledger's is {row.sha256}",
            )
            return False
        return True

    def reread_source(self, row: DestinationRow) -> ObjectInfo | None:
        """Re-read the source as it was when copied; its HEAD when the bytes match."""
        try:
            size, sha = self.read_hash(
                self.source,
                row.container,
                row.key,
                if_match=row.source_etag,
                version_id=row.source_version,
            )
            info = self.call(lambda: self.source.head(row.container, row.key))
        except (SourceChanged, NotFound) as exc:
            what = "deleted" if isinstance(exc, NotFound) else "changed"
            if what == "changed":  # some stores answer a conditional read of no object 412
                try:
                    self.call(lambda: self.source.head(row.container, row.key))
                except NotFound:
                    what = "deleted"
            self.finding(row, "source_changed", f"source object {what} since its copy")
            return None
        except NoAnswer as exc:
            # As for the destination's (reread): the source silent, or this object's body
            # cut at every try while it answers a HEAD (a review: it stopped every
            # --deep=both, exit 6, nothing recorded).
            if _gone_after_cut(
                lambda: self.call(lambda: self.source.head(row.container, row.key)), exc
            ):
                self.finding(row, "source_changed", "source object deleted since its copy")
                return None
            self.finding(
                row,
                "unreadable",
                "the source's bytes could not be read, the body cut at every try while the "
                f"store answers: {exc.one_line()}",
                source_side=True,
            )
            return None
        except (Retryable, Permanent) as exc:  # a source failing its own checksum: 500s
            self.finding(
                row,
                "unreadable",
                f"the source's bytes could not be read: {exc.one_line()}",
                source_side=True,
            )
            return None
        self.tally.bump("source_reread")
        self.tally.bump("source_reread_bytes", size)
        if sha != row.sha256 or size != row.size:
            self.finding(
                row,
                "checksum_mismatch",
                f"source bytes ({size} bytes, SHA-256 {sha}) differ from the ledger's record",
                source_side=True,
            )
            return None
        return info

    def metadata(
        self,
        row: DestinationRow,
        info: ObjectInfo,
        source: ObjectInfo | None,
        tags: Sequence[str] = (),
        tags_read: bool = True,
        *,
        compared: bool = False,
    ) -> None:
        """Content type, the other headers a copy keeps and user metadata against the
        source's, where both are known (the headers from the inventory where its listing
        carried them: Azure's); `tags`, the differences of the object's tags, in the same
        finding (`tags_read` False: they could not be read; `compared`: tags were compared,
        found right where `tags` is empty)."""
        headers: dict[str, str] | None
        # Every difference is named, in one finding: one the store is known to make (a type
        # of its own for the generic one) must not hide another (metadata lost).
        differences: list[str] = list(tags)
        store_made = not tags
        if source is not None:
            known = True
            ctype, meta = source.content_type, dict(source.metadata or {})
            headers = carried_headers(source)
        elif row.inventory_etag is not None and row.inventory_etag == row.source_etag:
            # None where the source's listing carried no metadata (S3): nothing to compare.
            known = row.metadata is not None
            ctype = row.content_type
            meta = json.loads(row.metadata) if row.metadata is not None else {}
            headers = json.loads(row.headers) if row.headers is not None else None
        else:
            known = False  # the source changed since its copy: the delta compares it
            ctype, meta, headers = None, {}, None
        if not known or info.metadata is None:
            if differences:
                self.finding(row, "metadata_mismatch", "; ".join(differences), mark=tags_read)
            elif compared and _tags_only(row.recopy_reason):
                self._right_now(row)  # its tags, the one thing compared, are right now
            return
        self.tally.bump("metadata_compared")
        if ctype and info.content_type and ctype != info.content_type:
            # The generic type some stores replace with one guessed from the name, at every
            # write (SeaweedFS): a copy again would send it and see it replaced again.
            generic = ctype.lower() == _GENERIC_TYPE and _guessable(
                row.destination_key, info.content_type
            )
            differences.append(
                f"content type {info.content_type!r}, the source's is {ctype!r}"
                + (": the destination store chose a type of its own for the generic one"
                   if generic else "")
            )  # fmt: skip
            store_made = store_made and generic
        # Where the source's headers are known, one the destination has and the source has
        # not is a mismatch too (a Content-Encoding added makes clients decode good bytes).
        kept = self.destination.capabilities.expires_header
        for name in CARRIED_HEADERS if headers is not None else ():
            if name == "expires" and not kept:
                continue  # a store without the header cannot keep it: no copy would mend it
            value = (headers or {}).get(name) or ""
            # A value beyond ASCII travels as header bytes each store and library decodes
            # its own way (UTF-8 read back as Latin-1): only its absence can be told.
            got = getattr(info, name) or ""
            if name == "expires" and _same_moment(value, got):
                continue
            if got != value and (value.isascii() or not got):
                differences.append(
                    f"{name.replace('_', ' ')} {got or None!r}, the source's is {value or None!r}"
                )
                store_made = False
        got_meta = {k.lower(): v for k, v in info.metadata.items()}
        # migrate's own names are the copy's, not carried from the source.
        theirs = {k.lower(): v for k, v in carried_metadata(meta).items()}
        for name in sorted(theirs.keys() | carried_metadata(got_meta).keys()):
            # An empty value and no entry are the same nothing: some stores (SeaweedFS)
            # drop an entry without a value when it is written.
            if (got_meta.get(name) or "") != (theirs.get(name) or ""):
                differences.append(
                    f"metadata {name!r} is {got_meta.get(name)!r}, the source's is "
                    f"{theirs.get(name)!r}"
                )
                store_made = False
        # An empty object named like a folder, at a store that keeps it as a folder and
        # drops all it carried (SeaweedFS): the plan warned (FOLDER_METADATA_MAY_BE_LOST),
        # and no copy again can mend it.
        folder = row.destination_key.endswith("/") and row.size == 0 and not tags
        kept_nothing = not carried_metadata(got_meta) and not any(
            getattr(info, name) for name in CARRIED_HEADERS
        )
        if differences and folder and kept_nothing:
            store_made = True
            differences.append(
                "the store keeps an empty object named like a folder as a folder, without "
                "what it carried"
            )
        if differences and store_made and not self.copy_again:
            # The type alone, and the store's doing at every write: named, not failing.
            self.finding(
                row,
                "store_altered",
                "; ".join(differences) + " at every write; the bytes are proven, and copying "
                "again would not mend it (verify --copy-again marks it, once the store is fixed)",
            )
            return
        if differences:
            # Tags that could not be read are not known wrong: marked for what else differs.
            mark = tags_read or len(differences) > len(tags)
            self.finding(row, "metadata_mismatch", "; ".join(differences), mark=mark)
            return
        self._right_now(row)

    def _right_now(self, row: DestinationRow) -> None:
        """The object's metadata found right: a same finding later is news, worth a copy
        again (see `finding`)."""
        if (row.recopy_reason or "").startswith(_recopy_reason("metadata_mismatch", "")):
            self.ledger.clear_recopy_reason(self.plan.name, row.container, row.key)

    def finding(
        self,
        row: DestinationRow,
        kind: FindingKind,
        detail: str,
        *,
        source_side: bool = False,
        mark: bool = True,
    ) -> None:
        """Record a finding. What the destination holds wrong is marked to copy again (the
        phase's next run does it); not what is wrong at the source (`source_side`): a copy
        of those bytes would be no better; nor what is not known wrong (`mark` False: what
        could not be read). What the destination alters at every write is `store_altered`,
        never marked (unless verify is told to copy again: then a metadata_mismatch)."""
        # A key the destination stores under another name (a//b as a/b) would be copied
        # and found missing again at every run: named, not marked.
        if (
            kind in WRONG_CONTENT
            and mark
            and not source_side
            and row.state == "done"
            and portable_key(row.destination_key)
        ):
            why = _recopy_reason(kind, detail)
            if kind in LASTING and row.recopy_reason == why and not self.copy_again:
                detail += (
                    "; so again after the copy verify asked for: the destination alters it on "
                    "write, and copying again would not mend it (not marked to copy again; "
                    "once the store is fixed, verify --copy-again marks it)"
                )
            elif self.ledger.transfer_to_copy_again(
                self.plan.name,
                row.container,
                row.key,
                why,
                # bytes found other, or not readable at all: never proven later as they are
                bytes_wrong=kind in ("size_mismatch", "checksum_mismatch", "unreadable"),
            ):
                self.tally.bump("to_copy_again")
                if self.ledger.source_deleted(self.plan.source, row.container, row.key):
                    self.tally.bump("gone_at_source")
        self.tally.add(
            VerifyFinding(
                kind,
                row.destination_bucket,
                row.destination_key,
                detail,
                source=f"{row.container}/{row.key}",
                phase=row.phase,
                source_container=row.container,
                source_key=row.key,
            )
        )


def _same_moment(source: str, copy: str) -> bool:
    """Expires headers naming one moment, however written (one write path sends the text
    as given, another as an HTTP date); a source's value that is no date at all cannot go
    through every path, and is not held against the copy."""
    if not source:
        return not copy
    want = expires_instant(source)
    return want is None or (bool(copy) and want == expires_instant(copy))


def _tags_only(reason: str | None) -> bool:
    """Whether a recopy reason names the object's tags alone (see `tag_differences`)."""
    prefix = _recopy_reason("metadata_mismatch", "")
    if not reason or not reason.startswith(prefix):
        return False
    return all(p.startswith(("tag ", "its tags ")) for p in reason[len(prefix) :].split("; "))


def _wait_some(running: set[Future[None]]) -> tuple[set[Future[None]], set[Future[None]]]:
    done, pending = wait(running, return_when=FIRST_COMPLETED)
    return set(done), set(pending)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def verify(
    plan: Plan,
    ledger: Ledger,
    source: StoreAdapter,
    destination: StoreAdapter,
    *,
    phase: str | None,
    deep: Deep,
    sample: float | None,
    seed: int,
    concurrency: int = 4,
    check_metadata: bool = False,
    copy_again: bool = False,
    max_findings: int = 10_000,
    sleep: Callable[[float], None] = time.sleep,
) -> VerifyResult:
    """Verify the destination of `plan` (one phase, or every phase) and record the result.

    `deep=True` re-reads every destination object, `deep="both"` the source too; else
    `sample` (a share in (0, 1]) re-reads the objects the seeded sample takes.
    `check_metadata` makes a HEAD of every object to compare its content type and metadata
    even where the ETag suffices (and one of its source, where the source's listing carried
    no metadata: S3's). `copy_again` marks to copy again even metadata found
    wrong again after the copy a verification asked for (see LASTING). A passing result
    marks `verified_at` on the phase (on every phase that ran, when `phase` is None)."""
    if sample is not None and not 0 < sample <= 1:
        raise ConfigError(f"sample share {sample} is not in (0, 1]", hint="e.g. --sample 5%")
    # Another plan's transfers under this name would be checked, and marked to copy again,
    # against this plan's destination.
    check_same_routes(plan, ledger)
    if phase is not None:
        plan.phase(phase)  # raises PlanError for an unknown name
        if ledger.phase_state(plan.name, phase).resolved_at is None:
            raise PlanError(
                f"phase {phase} of plan {plan.name} has not run: nothing to verify",
                hint=f"run `migrate run {plan.command_path} --phase {phase}` first",
            )
    elif not ledger.phase_counts(plan.name):
        raise PlanError(
            f"plan {plan.name} has not run: nothing to verify",
            hint=f"run `migrate run {plan.command_path} --phase {plan.phases[0].name}` first"
            if plan.phases
            else "make a plan with phases: `migrate plan`",
        )
    # The whole plan's verification covers every phase that ran, one with no object to copy
    # (a delta that found nothing changed) too: there is nothing of it left to check. Taken
    # before the merge: a phase that began after it started was not checked by it.
    phases = (
        (phase,)
        if phase is not None
        else tuple(
            sorted(
                {c.phase for c in ledger.phase_counts(plan.name)}
                | {
                    p.name
                    for p in plan.phases
                    if ledger.phase_state(plan.name, p.name).resolved_at is not None
                }
            )
        )
    )
    started = _now()
    tally = _Tally(max_findings=max_findings)
    verifier = _Verifier(
        plan,
        ledger,
        source,
        destination,
        phase=phase,
        deep=deep,
        sample=sample,
        seed=seed,
        concurrency=max(1, concurrency),
        check_metadata=check_metadata,
        copy_again=copy_again,
        tally=tally,
        sleep=sleep,
    )
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency))
    try:
        verifier.run(pool)
    except BaseException:
        # Ctrl-C: the checks under way finish, those queued are dropped (a deep one
        # re-reads a whole object), and nothing is marked verified.
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    cutovers = {p.name for p in plan.phases if p.kind == PhaseKind.CUTOVER}
    outside = ledger.datasets_outside(plan.source, plan.accounted) if cutovers & set(phases) else []
    held_back: tuple[str, ...] = ()
    if outside and phase is None:
        # The whole plan's objects may all be right (the cutover's run reports `verified`
        # so), but the estate may not switch over: the cutover is not marked verified.
        held_back = tuple(p for p in phases if p in cutovers)
        phases = tuple(p for p in phases if p not in cutovers)
    if phase in cutovers:
        # The cutover's verification says the estate may switch over: not while the source
        # holds datasets no phase of the plan copies (the cutover's run says so too).
        for d in outside:
            # No destination object: the plan maps no destination for it. `source` names it.
            tally.add(
                VerifyFinding(
                    "outside_plan",
                    "",
                    "",
                    f"{d.objects:,} object{'s' if d.objects != 1 else ''} ({d.bytes:,} bytes) "
                    "at the source in a dataset no phase of this plan copies: make a plan "
                    "for it, or leave it out on purpose (`migrate plan --exclude`)",
                    source=d.dataset,
                )
            )
    mode = "deep-both" if deep == "both" else "deep" if deep else "stored"
    result = VerifyResult(
        plan=plan.name,
        phase=phase,
        mode=mode,
        sample=None if deep else sample,
        seed=seed,
        started_at=started,
        finished_at=_now(),
        objects=tally.objects,
        bytes=tally.bytes,
        listed=tally.listed,
        heads=tally.heads,
        metadata_compared=tally.metadata_compared,
        reread=tally.reread,
        reread_bytes=tally.reread_bytes,
        source_reread=tally.source_reread,
        source_reread_bytes=tally.source_reread_bytes,
        counts=dict(sorted(tally.counts.items())),
        findings=tally.kept(),
        to_copy_again=tally.to_copy_again,
        gone_at_source=tally.gone_at_source,
        verified_phases=(),
        unfinished=tuple(p.name for p in plan.phases if p.name in tally.unfinished),
        metadata_asked=check_metadata,
    )
    verified = phases if result.passed else ()
    # Held back, the cutover loses an earlier mark too, passed or not: the estate may not
    # switch over.
    unverified = tuple(
        sorted(set(held_back) | set(() if result.passed else _found_wrong(plan, tally)))
    )
    result = replace(
        result,
        verified_phases=verified,
        held_back=held_back if result.passed else (),
        unverified_phases=unverified,
    )
    record = ledger.record_verification(
        plan.name,
        phase,
        mode=mode,
        sample=result.sample,
        seed=seed,
        started_at=result.started_at,
        finished_at=result.finished_at,
        passed=result.passed,
        objects=result.objects,
        size=result.bytes,
        reread=result.reread,
        summary=dumps(result.summary()),
        run_by=os_user(),
        tool_version=tool_version(),
        verified_phases=verified,
        unverified_phases=unverified,
    )
    return replace(result, record_id=record)

"""Verification through real servers: a good copy verifies (stored checksums, deep, deep
against the source too); one deleted, overwritten (same size, other bytes), unexpected,
re-labelled or unfinished object gives exactly one finding naming it; the listing and the
ledger merge in the same key order; a passing verification opens the next phase's gate."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from migrate.errors import (
    CredentialsRejected,
    NoAnswer,
    NotFound,
    PlanError,
    Retryable,
    Unsupported,
)
from migrate.executor import check_gates, run_phase
from migrate.inventory import run_inventory
from migrate.ledger import Ledger
from migrate.plan import Phase, PhaseKind, Plan
from migrate.verify import VerifyResult, sampled, verify
from providers.base import StoreAdapter, WriteAttrs
from tests.conftest import SiteFactory
from tests.helpers import body
from tests.test_executor import ESTATE, SMALL_PARTS, Delegating, Env, MiB, put

Estate = dict[str, tuple[bytes, str, dict[str, str], bool]]


@pytest.fixture
def env_for(site_for: SiteFactory, tmp_path: Path) -> Any:
    def make(source: str, destination: str) -> Env:
        return Env(site_for(source), site_for(destination), tmp_path)

    return make


def copied(env: Env, estate: Estate = ESTATE) -> Plan:
    env.seed(estate)
    plan = env.plan()
    summary = env.run(plan)
    assert summary.copied == len(estate) and summary.failed == 0
    return plan


def check(
    env: Env,
    plan: Plan,
    *,
    deep: bool | str = False,
    sample: float | None = None,
    seed: int = 7,
    phase: str | None = "bulk-1",
    source: StoreAdapter | None = None,
    destination: StoreAdapter | None = None,
    **kw: Any,
) -> VerifyResult:
    with Ledger(env.state) as ledger:
        return verify(
            plan,
            ledger,
            source or env.source,
            destination or env.destination,
            phase=phase,
            deep=deep,  # type: ignore[arg-type]
            sample=sample,
            seed=seed,
            **kw,
        )


def named(result: VerifyResult) -> list[tuple[str, str]]:
    return [(f.kind, f.key) for f in result.findings]


@pytest.mark.parametrize(("src", "dst"), [("s3", "s3"), ("azure", "s3"), ("s3", "local")])
def test_a_good_copy_verifies_stored_deep_and_against_the_source(
    env_for: Any, src: str, dst: str
) -> None:
    env: Env = env_for(src, dst)
    plan = copied(env)

    stored = check(env, plan)
    assert stored.passed, stored.findings
    assert (stored.objects, stored.listed) == (len(ESTATE), len(ESTATE))
    assert stored.bytes == sum(len(v[0]) for v in ESTATE.values())
    assert stored.reread == 0
    with Ledger(env.state) as ledger:
        assert ledger.phase_state("t", "bulk-1").verified_at is not None

    deep = check(env, plan, deep=True)
    assert deep.passed, deep.findings
    assert deep.reread == len(ESTATE) and deep.reread_bytes == stored.bytes

    both = check(env, plan, deep="both", check_metadata=True)
    assert both.passed, both.findings
    assert both.source_reread == len(ESTATE)
    assert both.mode == "deep-both"
    # What was compared is said: every object's metadata here; none from an S3 listing.
    assert both.metadata_compared == len(ESTATE)
    if dst == "s3":
        assert stored.metadata_compared == 0
    # --metadata compares every object's: from an Azure listing, or read from an S3 source
    # with a HEAD (its listing carries none; a walkthrough found it compared none, and
    # passed, as if it had).
    heads = check(env, plan, check_metadata=True)
    assert heads.metadata_compared == len(ESTATE) and heads.metadata_asked
    assert not stored.metadata_asked

    whole = check(env, plan, phase=None)
    assert whole.passed and whole.verified_phases == ("bulk-1",)
    with Ledger(env.state) as ledger:
        records = ledger.verifications("t")
    assert [r.mode for r in records] == ["stored", "deep", "deep-both", "stored", "stored"]
    assert all(r.passed for r in records)
    assert json.loads(records[1].summary)["reread"] == len(ESTATE)


def overwrite_same_size(env: Env, dst: str, key: str) -> None:
    """Other bytes of the same size under the same key: through the adapter on S3, behind
    its back (straight into the directory) on a local store."""
    old = ESTATE[key][0]
    new = bytes(b ^ 0x5A for b in old)
    assert len(new) == len(old) and new != old
    if dst == "local":
        root = Path(str(env.destination_site.path))
        (root / env.bucket / key).write_bytes(new)
    else:
        put(env.destination, env.bucket, key, new)


@pytest.mark.parametrize("dst", ["s3", "local"])
def test_one_deleted_and_one_overwritten_object_each_give_exactly_one_finding(
    env_for: Any, dst: str
) -> None:
    env: Env = env_for("s3", dst)
    plan = copied(env)
    env.destination.delete(env.bucket, "reports/2025/q1.csv")

    result = check(env, plan)
    assert not result.passed
    assert named(result) == [("missing", "reports/2025/q1.csv")]
    assert result.findings[0].source == f"{env.container}/reports/2025/q1.csv"
    assert result.to_copy_again == 1 and result.unverified_phases == ("bulk-1",)
    with Ledger(env.state) as ledger:
        assert ledger.phase_state("t", "bulk-1").verified_at is None
        assert not ledger.verifications("t")[-1].passed
    # Marked to copy again: until the phase runs again, it is not done.
    again = check(env, plan, deep=True)
    assert named(again) == [("not_done", "reports/2025/q1.csv")]
    assert "verify found it missing" in again.findings[0].detail and again.to_copy_again == 0
    assert env.run(plan).copied == 1  # only that one
    assert check(env, plan).passed

    for key in ("reports/2025/q2 été %+#.csv", "imaging/big.tar"):  # single PUT, multipart
        for deep in (False, True):
            overwrite_same_size(env, dst, key)
            result = check(env, plan, deep=deep)
            assert named(result) == [("checksum_mismatch", key)], result.findings
            with Ledger(env.state) as ledger:  # verified before, then found wrong: not now
                assert ledger.phase_state("t", "bulk-1").verified_at is None
            # Not this plan's copy any more (it bears no migrate-sha256 of it): another
            # writer's, maybe. The run leaves it as it is until asked to copy over it.
            first = env.run(plan)
            assert (first.conflicts, first.copied) == (1, 0)
            assert env.read_destination(key) != ESTATE[key][0]
            with Ledger(env.state) as ledger:
                again = run_phase(plan, "bulk-1", ledger, env.source, env.destination,
                                  config=SMALL_PARTS, overwrite=True)  # fmt: skip
            assert again.copied == 1
            assert env.read_destination(key) == ESTATE[key][0]
            assert check(env, plan).passed


@pytest.mark.parametrize("dst", ["s3", "local"])
def test_the_same_bytes_uploaded_in_one_piece_over_a_multipart_copy_still_verify(
    env_for: Any, dst: str
) -> None:
    """A multipart ETag depends on the part size: a different one is settled by the bytes."""
    env: Env = env_for("s3", dst)
    plan = copied(env, {"imaging/big.tar": ESTATE["imaging/big.tar"]})
    put(env.destination, env.bucket, "imaging/big.tar", ESTATE["imaging/big.tar"][0])
    result = check(env, plan)
    assert result.passed, result.findings
    assert result.reread == 1


@pytest.mark.parametrize("multipart", [False, True])
def test_a_source_that_an_earlier_migration_wrote_is_copied_with_migrates_names_its_own(
    env_for: Any, multipart: bool
) -> None:
    """A source that is an earlier migration's destination bears migrate's names. The copy
    writes its own (the SHA-256 of the bytes it read, the source's time), not the source's,
    carries the rest, and verifies with every check it has."""
    env: Env = env_for("s3", "s3")
    data = body(41, 12 * 1024 * 1024 + 5 if multipart else 4000)
    earlier = {"migrate-sha256": "0" * 64, "migrate-source-last-modified": "2020-01-01", "k": "v",
               "migrate-batch": "7"}  # fmt: skip
    plan = copied(env, {"again.bin": (data, "application/octet-stream", earlier, multipart)})
    meta = env.destination.head(env.bucket, "again.bin").metadata or {}
    assert meta["migrate-sha256"] == hashlib.sha256(data).hexdigest()
    assert meta["migrate-source-last-modified"] != "2020-01-01"
    assert (meta["k"], meta["migrate-batch"]) == ("v", "7")  # the user's, though named so
    for deep in (False, "both"):
        result = check(env, plan, deep=deep, check_metadata=True)
        assert result.passed, result.findings


def test_an_unknown_object_under_the_plan_prefix_is_unexpected(env_for: Any) -> None:
    env: Env = env_for("s3", "s3")
    plan = copied(env, {k: v for k, v in ESTATE.items() if not v[3]})
    assert check(env, plan).passed
    put(env.destination, env.bucket, "reports/2025/q3.csv", b"not from the source")
    for phase in ("bulk-1", None):
        result = check(env, plan, phase=phase)
        assert named(result) == [("unexpected", "reports/2025/q3.csv")]
        assert result.listed == 5 and not result.passed
        assert result.unverified_phases == ()  # what `verify` says it unmarked
    # Another writer's object is no fault of the copy: bulk-1 stays verified (its gates
    # open); only objects of a phase found wrong take that phase's mark away.
    with Ledger(env.state) as ledger:
        assert ledger.phase_state("t", "bulk-1").verified_at is not None


@pytest.mark.parametrize("src", ["azure", "s3"])
def test_metadata_changed_at_the_destination_is_found_with_a_head(env_for: Any, src: str) -> None:
    # An Azure listing carries metadata (the inventory has it); an S3 source's is read
    env: Env = env_for(src, "s3")
    plan = copied(env, {k: v for k, v in ESTATE.items() if not v[3]})
    key = "reports/2025/q1.csv"
    data, ctype, _, _ = ESTATE[key]
    head = env.destination.head(env.bucket, key)
    meta = dict(head.metadata or {})
    meta["owner"] = "someone-else"
    put(env.destination, env.bucket, key, data, content_type=ctype, meta=meta)

    assert check(env, plan).passed  # same bytes, same ETag: stored checksums cannot tell
    result = check(env, plan, check_metadata=True)
    assert named(result) == [("metadata_mismatch", key)]
    assert "owner" in result.findings[0].detail


def test_metadata_rewritten_at_an_s3_source_under_the_same_etag_is_found_by_metadata(
    env_for: Any,
) -> None:
    """An S3 object whose metadata alone was rewritten keeps its ETag: a delta sees its
    later time, but not a rewrite in the same second as the one its re-list saw (times are
    to the second). `--metadata` reads the source's metadata itself and finds the copy
    behind (a walkthrough found it compared none on an S3 source)."""
    env: Env = env_for("s3", "s3")
    plan = copied(env, {k: v for k, v in ESTATE.items() if not v[3]})
    key = "reports/2025/q1.csv"
    data, ctype, meta, _ = ESTATE[key]
    put(env.source, env.container, key, data, content_type=ctype, meta={**meta, "owner": "B2"})
    assert check(env, plan).passed  # the destination as copied: stored checksums agree
    result = check(env, plan, check_metadata=True)
    assert named(result) == [("metadata_mismatch", key)], result.findings
    assert "'owner'" in result.findings[0].detail and "'B2'" in result.findings[0].detail


def test_headers_and_metadata_added_at_the_destination_are_found(env_for: Any) -> None:
    """Another writer rewrites copies with their own bytes and migrate's metadata, adding a
    Content-Encoding (clients would then decode good bytes) or a metadata entry the source
    has not: each is a mismatch, as much as one taken away."""
    env: Env = env_for("azure", "s3")  # an Azure listing carries headers and metadata
    plan = copied(env, {k: v for k, v in ESTATE.items() if not v[3]})
    assert check(env, plan, check_metadata=True).passed
    encoded, labelled = "reports/2025/q1.csv", "reports/2025/q2 été %+#.csv"
    for key, extra in ((encoded, {"content_encoding": "gzip"}), (labelled, {})):
        data, ctype, _, _ = ESTATE[key]
        meta = dict(env.destination.head(env.bucket, key).metadata or {})
        if key == labelled:
            meta["classification"] = "public"
        put(env.destination, env.bucket, key, data, content_type=ctype, meta=meta, **extra)

    assert check(env, plan).passed  # same bytes, same ETag: stored checksums cannot tell
    result = check(env, plan, check_metadata=True)
    assert named(result) == [("metadata_mismatch", encoded), ("metadata_mismatch", labelled)]
    details = [f.detail for f in result.findings]
    assert details[0] == "content encoding 'gzip', the source's is None", details
    assert details[1] == "metadata 'classification' is 'public', the source's is None", details


@pytest.mark.parametrize(
    ("src", "dst"), [("azure", "s3"), ("s3", "s3"), ("s3", "azure"), ("local", "local")]
)
def test_tags_arrive_with_their_objects_and_a_copy_that_lost_them_is_found(
    env_for: Any, src: str, dst: str
) -> None:
    """Object tags (S3 object tagging, Azure blob index tags: a retention or classification
    label, say) arrive with their objects, sent in one PUT, in parts or empty. verify
    compares them unasked; a copy rewritten without them is named, in one finding, and
    copied again by the next run."""
    env: Env = env_for(src, dst)
    # S3 tags may hold '&' and '%' (SeaweedFS takes them on a PUT, refuses them on a copy
    # onto itself); Azure's may not.
    team = "r+d 50" if "azure" in (src, dst) else "r&d 50%"
    tags = {"classification": "pseudonymised", "retention": "2036-01-01", "team": team}
    tagged = {"tagged/one.csv": b"id;age\n1;42\n", "tagged/parts.bin": body(21, 11 * MiB),
              "tagged/empty": b""}  # fmt: skip
    for key, data in tagged.items():
        ctype = "text/csv" if key.endswith(".csv") else "application/octet-stream"
        put(env.source, env.container, key, data, content_type=ctype,
            multipart=len(data) > 5 * MiB, tags=tags)  # fmt: skip
    put(env.source, env.container, "plain.txt", b"no tags")
    plan = env.plan()
    summary = env.run(plan)

    assert (summary.copied, summary.failed) == (4, 0)
    for key in tagged:
        assert env.destination.read_tags(env.bucket, key) == tags, key
    assert env.destination.read_tags(env.bucket, "plain.txt") == {}
    first = check(env, plan)
    assert first.passed, first.findings

    # Another writer puts the same bytes and metadata back, without the tags.
    key = "tagged/one.csv"
    head = env.destination.head(env.bucket, key)
    put(env.destination, env.bucket, key, tagged[key], content_type="text/csv",
        meta=dict(head.metadata or {}))  # fmt: skip
    result = check(env, plan)
    assert named(result) == [("metadata_mismatch", key)]
    assert result.findings[0].detail == (
        "tag 'classification' is None, the source's is 'pseudonymised'; "
        "tag 'retention' is None, the source's is '2036-01-01'; "
        f"tag 'team' is None, the source's is {team!r}"
    )
    assert result.to_copy_again == 1
    assert env.run(plan).copied == 1
    assert env.destination.read_tags(env.bucket, key) == tags
    assert check(env, plan).passed
    # Stripped again later: news, so marked to copy again again.
    put(env.destination, env.bucket, key, tagged[key], content_type="text/csv",
        meta=dict(env.destination.head(env.bucket, key).metadata or {}))  # fmt: skip
    assert check(env, plan).to_copy_again == 1


@pytest.mark.parametrize("src", ["s3", "azure"])
def test_tags_changed_at_the_source_after_the_copy_are_found_by_deep_both(
    env_for: Any, src: str
) -> None:
    """A tag changed at the source (a retention label extended) moves neither the object's
    ETag nor its time: no delta sees it, and verify compared the destination's tags with
    those the copy set. `--deep=both` reads the source's too: the copy is found wrong,
    marked to copy again, and the next run gives it the tags as they are now."""
    env: Env = env_for(src, "s3")
    key, data = "tagged/one.csv", b"id;age\n1;42\n"
    tags = {"classification": "pseudonymised", "retention": "2036-01-01"}
    put(env.source, env.container, key, data, content_type="text/csv", tags=tags)
    put(env.source, env.container, "plain.csv", b"no;tags\n", content_type="text/csv")
    plan = env.plan()
    assert env.run(plan).copied == 2
    first = check(env, plan, deep="both")
    assert first.passed, first.findings

    later = {**tags, "retention": "2046-01-01"}
    etag = env.source.head(env.container, key).etag
    if src == "s3":
        env.source._client.put_object_tagging(  # type: ignore[attr-defined]
            Bucket=env.container,
            Key=key,
            Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in later.items()]},
        )
    else:
        env.source._blob(env.container, key).set_blob_tags(later)  # type: ignore[attr-defined]
    assert env.source.head(env.container, key).etag == etag  # nothing a delta would see
    assert check(env, plan).passed  # the destination still bears what the copy set
    result = check(env, plan, deep="both")
    assert named(result) == [("metadata_mismatch", key)]
    assert (
        result.findings[0].detail == "tag 'retention' is '2036-01-01', the source's is '2046-01-01'"
    )
    assert result.to_copy_again == 1
    assert env.run(plan).copied == 1
    assert env.destination.read_tags(env.bucket, key) == later
    assert check(env, plan, deep="both").passed


def test_keys_merge_in_byte_order(env_for: Any) -> None:
    """Keys whose order differs between naive sorts ('/' sorts after ' ' and '-' but before
    '0'; accents after ASCII; upper before lower case): no spurious finding."""
    env: Env = env_for("s3", "s3")
    keys = ["a b", "a-b", "a/b", "a/b/c", "a0", "Z", "z", "é/x", "éa", "~", "a/b c", "a/b-c"]
    estate = {k: (body(i, 100 + i), "text/plain", {}, False) for i, k in enumerate(keys)}
    estate.pop("a/b")  # "a/b" beside "a/b/c" is fine on S3, kept out to stay store-neutral
    plan = copied(env, estate)
    result = check(env, plan, deep=True)
    assert result.passed, result.findings
    assert result.objects == len(estate) == result.listed
    # The ledger's keyset pages join up whatever their size, in the stores' order.
    with Ledger(env.state) as ledger:
        whole = list(ledger.destination_rows("t", env.source_site.name, env.bucket))
        paged = list(ledger.destination_rows("t", env.source_site.name, env.bucket, batch=2))
        manifest = list(ledger.manifest_rows("t"))
        manifest_paged = list(ledger.manifest_rows("t", batch=3))
    assert whole == paged and manifest == manifest_paged
    assert [r.destination_key for r in whole] == sorted(estate, key=lambda k: k.encode())


def test_unfinished_transfers_are_not_done_and_the_gate_stays_shut(env_for: Any) -> None:
    env: Env = env_for("s3", "s3")
    env.seed({k: v for k, v in ESTATE.items() if not v[3]})
    plan = env.plan()
    plan = plan.model_copy(
        update={
            "phases": (
                Phase(name="bulk-1", kind=PhaseKind.BULK),
                Phase(name="bulk-2", kind=PhaseKind.BULK, requires=("bulk-1",)),
            )
        }
    )
    with Ledger(env.state) as ledger:
        with pytest.raises(PlanError, match="has not run"):
            verify(
                plan,
                ledger,
                env.source,
                env.destination,
                phase="bulk-1",
                deep=False,
                sample=None,
                seed=1,
            )
        ledger.resolve_phase(plan, "bulk-1")
    result = check(env, plan)
    assert sorted(named(result)) == sorted(("not_done", k) for k in ESTATE if not ESTATE[k][3])
    with Ledger(env.state) as ledger, pytest.raises(PlanError, match="verified first"):
        check_gates(plan, "bulk-2", ledger, None)

    env.run(plan)
    assert check(env, plan).passed
    with Ledger(env.state) as ledger:
        check_gates(plan, "bulk-2", ledger, None)  # open now


def test_a_sample_is_seeded_recorded_and_reproducible(env_for: Any) -> None:
    env: Env = env_for("s3", "s3")
    estate = {f"k/{i:03d}": (body(i, 300), "text/plain", {}, False) for i in range(30)}
    plan = copied(env, estate)
    first = check(env, plan, sample=0.4, seed=20261123)
    again = check(env, plan, sample=0.4, seed=20261123)
    other = check(env, plan, sample=0.4, seed=1)
    assert first.passed and again.passed and other.passed
    expected = sum(sampled(20261123, env.bucket, k, 0.4) for k in estate)
    assert 0 < first.reread == again.reread == expected < len(estate)
    assert first.seed == 20261123 and first.sample == 0.4
    with Ledger(env.state) as ledger:
        record = ledger.verifications("t")[0]
    assert (record.seed, record.sample, record.reread) == (20261123, 0.4, expected)
    picked = {k for k in estate if sampled(1, env.bucket, k, 0.4)}
    assert picked != {k for k in estate if sampled(20261123, env.bucket, k, 0.4)}
    assert other.reread == len(picked)


def test_a_sample_of_a_small_phase_re_reads_at_least_one_object(env_for: Any) -> None:
    """5 % of 3 objects is none: the sample then takes the object of the lowest sample
    point, so that its record proves some bytes, the same one for the same seed."""
    env: Env = env_for("s3", "s3")
    estate = {f"k/{i}": (body(i, 300 + i), "text/plain", {}, False) for i in range(3)}
    plan = copied(env, estate)
    seed = next(n for n in range(100) if not any(sampled(n, env.bucket, k, 0.05) for k in estate))
    lowest = min(
        estate, key=lambda k: hashlib.sha256(f"{seed}\0{env.bucket}\0{k}".encode()).digest()
    )
    for _ in range(2):
        result = check(env, plan, sample=0.05, seed=seed)
        assert result.passed
        assert (result.reread, result.reread_bytes) == (1, len(estate[lowest][0]))


@pytest.mark.parametrize("src", ["s3", "azure"])
def test_deep_both_reports_a_source_changed_since_its_copy_without_failing(
    env_for: Any, src: str
) -> None:
    env: Env = env_for(src, "s3")
    plan = copied(env, {k: v for k, v in ESTATE.items() if not v[3]})
    put(env.source, env.container, "top.txt", b"changed at the source")
    env.source.delete(env.container, "reports/2025/q1.csv")
    result = check(env, plan, deep="both")
    assert sorted(named(result)) == [
        ("source_changed", "reports/2025/q1.csv"),
        ("source_changed", "top.txt"),
    ]
    said = {f.key: f.detail for f in result.findings}
    # Each says what happened to it (a store may answer a read of no object 412).
    assert said["top.txt"] == "source object changed since its copy"
    assert said["reports/2025/q1.csv"] == "source object deleted since its copy"
    assert result.passed  # the copies themselves are intact: the delta phase takes both
    # But the copy is stale: the report is not complete (it said "complete and verified"
    # while its own latest verification had found them: an audit).
    from tests.test_report import report_of

    report = report_of(env, plan)
    assert report.status == "incomplete", report.open_items
    assert any("found 2 source objects changed or deleted since the copy" in i
               for i in report.open_items), report.open_items  # fmt: skip
    # A plain verification since reads no source: it does not clear them (a review).
    assert check(env, plan).passed
    assert report_of(env, plan).status == "incomplete"


def test_the_findings_that_fail_a_verification_are_kept_first(env_for: Any) -> None:
    """Findings that fail nothing (a source changed since its copy, a store's alteration)
    may number thousands: they never crowd out, of the findings kept (stdout's first 50,
    --json's 1,000, the ledger's 100), the one that fails it (a walkthrough found it named
    nowhere, behind 9,375 store_altered)."""
    env: Env = env_for("s3", "s3")
    estate = {k: v for k, v in ESTATE.items() if not v[3]}
    plan = copied(env, estate)
    last = sorted(estate)[-1]
    for key in sorted(estate)[:-1]:
        put(env.source, env.container, key, b"changed at the source")
    env.destination.delete(env.bucket, last)
    result = check(env, plan, deep="both", max_findings=2)
    assert not result.passed
    assert result.counts == {"source_changed": len(estate) - 1, "missing": 1}
    (first, kind), (second, _) = [(f.kind, f.key) for f in result.findings]
    assert (first, kind, second) == ("missing", last, "source_changed")
    assert result.truncated == len(estate) - 2


def test_a_folder_marker_whose_metadata_the_store_drops_is_the_stores_doing(env_for: Any) -> None:
    """An empty object named like a folder, with metadata (the plan's warning,
    FOLDER_METADATA_MAY_BE_LOST): SeaweedFS keeps it as a folder, without it. A metadata
    verification names it store_altered and passes: no copy again can mend it, and a failing
    one closed every gate for good (a walkthrough). An object with bytes is not excused."""
    env: Env = env_for("azure", "s3")
    plan = copied(env, {
        "marks/folder/": (b"", "application/octet-stream", {"owner": "dpo"}, False),
        "marks/file.txt": (b"a note", "text/plain", {"owner": "dpo"}, False),
    })  # fmt: skip
    result = check(env, plan, check_metadata=True)
    assert result.passed, result.findings
    assert named(result) == [("store_altered", "marks/folder/")]
    assert "named like a folder" in result.findings[0].detail
    meta = dict(env.destination.head(env.bucket, "marks/file.txt").metadata or {})
    meta.pop("owner")
    put(env.destination, env.bucket, "marks/file.txt", b"a note", content_type="text/plain",
        meta=meta)  # fmt: skip
    result = check(env, plan, check_metadata=True)
    assert [f.kind for f in result.findings if f.key == "marks/file.txt"] == ["metadata_mismatch"]


def test_an_empty_metadata_value_the_destination_drops_is_no_finding(env_for: Any) -> None:
    """Azure keeps a metadata entry with an empty value; SeaweedFS drops it on write. The
    copy holds the same nothing: verify passes and asks for no copy again."""
    env: Env = env_for("azure", "s3")
    key = "notes/empty.txt"
    plan = copied(env, {key: (b"a note", "text/plain", {"note": "", "owner": "dpo"}, False)})
    assert (env.destination.head(env.bucket, key).metadata or {}).get("owner") == "dpo"
    result = check(env, plan, check_metadata=True)
    assert result.passed, result.findings
    with Ledger(env.state) as ledger:
        assert {c.state for c in ledger.phase_counts(plan.name)} == {"done"}


class DropsUnderscoreNames(Delegating):
    """A destination behind a proxy that drops metadata whose name holds `_`, at every
    write: a copy again holds the same loss."""

    @staticmethod
    def _attrs(attrs: WriteAttrs) -> WriteAttrs:
        kept = {k: v for k, v in attrs.metadata.items() if "_" not in k}
        return dataclasses.replace(attrs, metadata=kept)

    def put_object(self, container: str, key: str, body: Any, length: int, attrs: WriteAttrs,
                   checksums: Any, **kw: Any) -> Any:  # fmt: skip
        return self._inner.put_object(container, key, body, length, self._attrs(attrs), checksums,
                                      **kw)  # fmt: skip

    def create_multipart(self, container: str, key: str, attrs: WriteAttrs) -> str:
        return self._inner.create_multipart(container, key, self._attrs(attrs))

    def replace_metadata(self, container: str, key: str, attrs: WriteAttrs, **kw: Any) -> Any:
        return self._inner.replace_metadata(container, key, self._attrs(attrs), **kw)


def test_metadata_the_destination_alters_at_every_write_is_copied_again_once(
    env_for: Any,
) -> None:
    """verify finds a metadata entry missing and asks for a copy again; found missing again
    after that copy, it is still a finding (the verification fails) but not marked to copy
    again: the next run copies nothing, instead of every verify and run copying it forever.
    (From Azure: its listing carries the metadata verify compares with.)"""
    env: Env = env_for("azure", "s3")
    key = "cohort/a.csv"
    env.seed({key: (b"id,age\n1,42\n", "text/csv", {"study_id": "c-17", "owner": "dpo"}, False)})
    plan = env.plan()
    lossy = DropsUnderscoreNames(env.destination)
    assert env.run(plan, destination=lossy).copied == 1
    first = check(env, plan, check_metadata=True)
    assert named(first) == [("metadata_mismatch", key)] and first.to_copy_again == 1
    assert env.run(plan, destination=lossy).copied == 1
    second = check(env, plan, check_metadata=True)
    assert named(second) == [("metadata_mismatch", key)] and not second.passed
    assert second.to_copy_again == 0
    assert "copying again would not mend it" in second.findings[0].detail
    assert env.run(plan, destination=lossy).copied == 0
    # The store fixed, the user asks for the copy again: it is made, and verifies.
    assert check(env, plan, check_metadata=True, copy_again=True).to_copy_again == 1
    assert env.run(plan).copied == 1
    assert check(env, plan, check_metadata=True).passed
    # Later, a one-off script strips that entry again: news, so copied again.
    copy = env.destination.head(env.bucket, key)
    kept = {k: v for k, v in (copy.metadata or {}).items() if k != "study_id"}
    env.destination.replace_metadata(env.bucket, key, WriteAttrs(content_type="text/csv",
        metadata=kept), if_match=copy.etag or "", size=copy.size)  # fmt: skip
    assert check(env, plan, check_metadata=True).to_copy_again == 1


def test_a_generic_content_type_the_destination_replaces_is_named_not_held_against_the_copy(
    env_for: Any,
) -> None:
    """An Azure blob keeps the generic application/octet-stream; SeaweedFS stores the copy
    under a type it guesses from the name, at every write. verify names it (store_altered)
    and passes: no copy could avoid it, and the verification (so the report) could never
    pass otherwise. It asks for no copy again, which would end the same; --copy-again, once
    the store is fixed, holds it against the copy and marks it."""
    env: Env = env_for("azure", "s3")
    key = "cohort/table.csv"
    plan = copied(env, {key: (b"id,age\n1,42\n", "application/octet-stream", {}, False)})
    stored = env.destination.head(env.bucket, key).content_type
    assert stored not in (None, "application/octet-stream")  # what SeaweedFS 4.x does

    result = check(env, plan, check_metadata=True)

    assert named(result) == [("store_altered", key)] and result.passed
    assert result.to_copy_again == 0
    assert "chose a type of its own" in result.findings[0].detail
    with Ledger(env.state) as ledger:
        assert ledger.phase_state(plan.name, "bulk-1").verified_at is not None
    assert env.run(plan).copied == 0
    fixed = check(env, plan, check_metadata=True, copy_again=True)
    assert named(fixed) == [("metadata_mismatch", key)] and fixed.to_copy_again == 1


def test_a_type_no_name_guess_gives_over_the_generic_one_is_held_against_the_copy(
    env_for: Any,
) -> None:
    """Any type over the generic one passed as the store's guess, whoever set it: text/html
    put over a .csv's (an audit). Only the type its name's extension maps to is the store's."""
    env: Env = env_for("azure", "s3")
    key = "cohort/table.csv"
    plan = copied(env, {key: (b"id,age\n1,42\n", "application/octet-stream", {}, False)})
    copy = env.destination.head(env.bucket, key)
    env.destination.replace_metadata(env.bucket, key, WriteAttrs(
        content_type="text/html; charset=utf-8", metadata=dict(copy.metadata or {})),
        if_match=copy.etag or "", size=copy.size)  # fmt: skip
    result = check(env, plan, check_metadata=True)
    assert named(result) == [("metadata_mismatch", key)] and not result.passed
    assert "text/html" in result.findings[0].detail


def test_metadata_lost_beside_a_type_the_store_chose_is_named_and_copied_again(
    env_for: Any,
) -> None:
    """The store's own type for the generic one must not hide user metadata lost at the
    destination (verify named only the first difference, and the metadata was never named
    nor copied again: found by a black-box review): both are named, in one finding, and
    the copy is made again."""
    env: Env = env_for("azure", "s3")
    key = "cohort/table.csv"
    meta = {"owner": "dpo", "retention": "20y"}
    plan = copied(env, {key: (b"id,age\n1,42\n", "application/octet-stream", meta, False)})
    copy = env.destination.head(env.bucket, key)
    kept = {k: v for k, v in (copy.metadata or {}).items() if k.lower() != "owner"}
    env.destination.replace_metadata(env.bucket, key, WriteAttrs(
        content_type=copy.content_type, metadata=kept), if_match=copy.etag or "",
        size=copy.size)  # fmt: skip

    result = check(env, plan, check_metadata=True)

    assert named(result) == [("metadata_mismatch", key)] and not result.passed
    detail = result.findings[0].detail
    assert "chose a type of its own" in detail and "metadata 'owner' is None" in detail, detail
    assert result.to_copy_again == 1
    assert env.run(plan).copied == 1
    assert env.destination.head(env.bucket, key).metadata.get("owner") == "dpo"


class DropsDisposition(Delegating):
    """A destination that loses Content-Disposition on a single PUT of a key `lost*`."""

    def put_object(self, container: str, key: str, body: Any, length: int, attrs: WriteAttrs,
                   checksums: Any, **kw: Any) -> Any:  # fmt: skip
        if key.startswith("lost"):
            attrs = dataclasses.replace(attrs, content_disposition=None)
        return self._inner.put_object(container, key, body, length, attrs, checksums, **kw)


def test_headers_the_copy_keeps_are_verified_against_the_source(env_for: Any) -> None:
    """Cache-Control, Content-Disposition, Content-Language and Content-Encoding are part of
    what a copy keeps: verify compares them with the source's (as its inventory listed them),
    and one lost at the destination is a finding."""
    env: Env = env_for("azure", "s3")
    headers = {
        "cache_control": "private, max-age=60",
        "content_disposition": 'attachment; filename="a.csv"',
        "content_language": "fr",
        "content_encoding": "identity",
    }
    for key in ("kept.csv", "lost.csv"):
        put(env.source, env.container, key, b"id,age\n1,42\n", content_type="text/csv", **headers)
    plan = env.plan()
    assert env.run(plan, destination=DropsDisposition(env.destination)).copied == 2
    result = check(env, plan, check_metadata=True)
    assert named(result) == [("metadata_mismatch", "lost.csv")], result.findings
    assert "content disposition None, the source's is 'attachment" in result.findings[0].detail


def test_a_header_value_beyond_ascii_is_checked_for_presence_only(env_for: Any) -> None:
    """Azurite's listing gives the filename as written; its GET and SeaweedFS's HEAD give
    the header's bytes decoded their own way. Not comparable: no finding (the plan warns,
    HEADERS_NOT_ASCII, that such values may not be kept exactly); a value dropped
    altogether is one."""
    env: Env = env_for("azure", "s3")
    put(env.source, env.container, "cv.pdf", b"%PDF-1.4", content_type="application/pdf",
        content_disposition='attachment; filename="résumé.pdf"')  # fmt: skip
    put(env.source, env.container, "lost.pdf", b"%PDF-1.4", content_type="application/pdf",
        content_disposition='attachment; filename="perdu.pdf" ; é')  # fmt: skip
    plan = env.plan()
    assert env.run(plan, destination=DropsDisposition(env.destination)).copied == 2
    result = check(env, plan, check_metadata=True)
    # Dropped altogether: that much can be told.
    assert named(result) == [("metadata_mismatch", "lost.pdf")], result.findings


class TagsRefused(Delegating):
    """A source key without the right to read tags (SeaweedFS lets any reader read them)."""

    def read_tags(self, container: str, key: str, **kw: Any) -> dict[str, str]:
        raise CredentialsRejected(f"seaweed: {container}/{key}: access denied (AccessDenied)")


def test_an_s3_tag_azure_would_refuse_fails_that_copy_saying_which_and_why(
    env_for: Any,
) -> None:
    """S3 tags may hold characters Azure's blob index tags do not take ('&', '%', '@'):
    that object's copy fails before any byte is sent, naming the tag and Azure's rule (it
    was the service's generic refusal), large objects before their parts; the others go."""
    env: Env = env_for("s3", "azure")
    put(env.source, env.container, "odd.csv", b"a;b\n", tags={"team": "r&d 50%"})
    put(env.source, env.container, "odd-large.bin", body(5, 11 * MiB), multipart=True,
        tags={"owner": "dpo@chu.fr"})  # fmt: skip
    put(env.source, env.container, "fine.csv", b"c;d\n", tags={"team": "r+d 50"})
    plan = env.plan()
    summary = env.run(plan)
    assert (summary.copied, summary.failed) == (1, 2)
    with Ledger(env.state) as ledger:
        errors = dict(ledger._db.execute("SELECT key, error FROM transfers WHERE state='failed'"))
    assert "tag 'team' = 'r&d 50%' is not one Azure blob index tags take" in errors["odd.csv"]
    assert "tag 'owner' = 'dpo@chu.fr'" in errors["odd-large.bin"]
    assert env.destination.read_tags(env.bucket, "fine.csv") == {"team": "r+d 50"}
    with Ledger(env.state) as ledger:  # refused at the upload's start: no part was sent
        (upload,) = ledger._db.execute(
            "SELECT upload_id FROM transfers WHERE key = 'odd-large.bin'"
        ).fetchone()
    assert upload is None


class NoTagging(Delegating):
    """A store without object tagging (Exoscale's SOS, say): GetObjectTagging unsupported."""

    def read_tags(self, container: str, key: str, **kw: Any) -> dict[str, str]:
        raise Unsupported(f"dst: {container}/{key}: the store cannot do GetObjectTagging")


def test_a_destination_without_object_tagging_verifies_objects_without_tags(
    env_for: Any,
) -> None:
    """Objects without tags, on a destination that has no object tagging: nothing to
    compare, and no finding, plain or with --deep=both (which reads the source's tags)."""
    env: Env = env_for("s3", "s3")
    put(env.source, env.container, "plain.csv", b"c;d\n", content_type="text/csv")
    plan = env.plan()
    assert env.run(plan).copied == 1
    bare = NoTagging(env.destination)
    for deep in (False, True, "both"):
        result = check(env, plan, deep=deep, destination=bare)  # type: ignore[arg-type]
        assert result.passed, (deep, result.findings)


def test_a_source_key_that_may_not_read_tags_fails_those_objects_saying_so(
    env_for: Any,
) -> None:
    """A tagged object is not copied without its tags: where the source's credentials may
    not read them, its transfer fails, saying what to grant; the others are copied."""
    env: Env = env_for("s3", "s3")
    put(env.source, env.container, "tagged.csv", b"a;b\n", tags={"retention": "2036"})
    put(env.source, env.container, "plain.csv", b"c;d\n")
    # Empty objects are read with a HEAD, which not every store counts tags in: their tags
    # are asked for, and a refusal is taken as none, as a GET's answer gives none.
    put(env.source, env.container, "empty.txt", b"")
    put(env.source, env.container, "folder/", b"")
    plan = env.plan()
    summary = env.run(plan, source=TagsRefused(env.source))  # type: ignore[arg-type]

    assert (summary.copied, summary.failed) == (3, 1)
    with Ledger(env.state) as ledger:
        states = dict(ledger._db.execute("SELECT key, state || ' ' || error FROM transfers"))
    assert states["plain.csv"] == "done source-proof:md5"
    assert states["empty.txt"].startswith("done") and states["folder/"].startswith("done")
    assert states["tagged.csv"].startswith("failed ")
    assert "its tags cannot be read" in states["tagged.csv"]
    assert "s3:GetObjectTagging" in states["tagged.csv"]
    with pytest.raises(NotFound):
        env.destination.head(env.bucket, "tagged.csv")
    # verify --deep=both with the same key: the untagged objects it copied pass (their
    # copy needed no such right either); it says so only of the tagged one's tags.
    refused = check(env, plan, deep="both", source=TagsRefused(env.source))  # type: ignore[arg-type]
    assert named(refused) == [("not_done", "tagged.csv")], refused.findings
    # Granted, the next run copies it with its tags.
    assert env.run(plan).copied == 1
    assert env.destination.read_tags(env.bucket, "tagged.csv") == {"retention": "2036"}
    refused = check(env, plan, deep="both", source=TagsRefused(env.source))  # type: ignore[arg-type]
    assert named(refused) == [("metadata_mismatch", "tagged.csv")], refused.findings
    assert "the source's tags could not be read" in refused.findings[0].detail
    assert refused.to_copy_again == 0  # not known wrong


def test_large_objects_rewritten_by_parts_keep_their_tags_without_reading_them(
    env_for: Any,
) -> None:
    """Writing the SHA-256 of an object above the store's single-copy limit makes a new
    object by parts: it is given the tags the copy knows (values with '&' and '%', which
    SeaweedFS refuses on a copy onto itself), without reading the destination's, which
    its credentials may not be allowed to."""
    env: Env = env_for("s3", "s3")
    caps = env.destination.capabilities
    env.destination.capabilities = dataclasses.replace(caps, max_copy_size=5 * MiB)
    tags = {"owner": "r&d 50%", "retention": "2036"}
    put(env.source, env.container, "tagged.bin", body(31, 11 * MiB), multipart=True, tags=tags)
    put(env.source, env.container, "plain.bin", body(32, 11 * MiB), multipart=True)
    plan = env.plan()

    def refused(*args: Any, **kwargs: Any) -> dict[str, str]:
        raise CredentialsRejected("seaweed: access denied (AccessDenied)")

    env.destination.read_tags = refused  # type: ignore[method-assign]
    summary = env.run(plan)
    del env.destination.read_tags

    assert (summary.copied, summary.failed) == (2, 0), summary.failures
    assert env.destination.read_tags(env.bucket, "tagged.bin") == tags
    assert env.destination.read_tags(env.bucket, "plain.bin") == {}
    for key in ("tagged.bin", "plain.bin"):
        assert "migrate-sha256" in (env.destination.head(env.bucket, key).metadata or {})
    assert check(env, plan).passed


class TagsUnreadable(Delegating):
    """A destination key that may write tags but not read them."""

    def read_tags(self, container: str, key: str, **kw: Any) -> dict[str, str]:
        raise CredentialsRejected(f"seaweed: {container}/{key}: access denied (AccessDenied)")


def test_tags_verify_may_not_read_are_named_not_copied_again(env_for: Any) -> None:
    """Tags that cannot be read are not known wrong: named, with what to grant, and the
    object is not marked to copy again (a copy would not make them readable)."""
    env: Env = env_for("s3", "s3")
    put(env.source, env.container, "tagged.csv", b"a;b\n", content_type="text/csv",
        tags={"retention": "2036"})  # fmt: skip
    plan = env.plan()
    assert env.run(plan).copied == 1
    with Ledger(env.state) as ledger:
        result = verify(plan, ledger, env.source, TagsUnreadable(env.destination),  # type: ignore[arg-type]
                        phase="bulk-1", deep=False, sample=None, seed=7)  # fmt: skip
    assert named(result) == [("metadata_mismatch", "tagged.csv")] and not result.passed
    assert "its tags could not be read" in result.findings[0].detail
    assert "s3:GetObjectTagging" in result.findings[0].detail
    assert result.to_copy_again == 0


class FailsItsOwnChecksum(Delegating):
    """A destination that answers 500 to every read of one object (SeaweedFS whose stored
    bytes fail its CRC); the others read well."""

    bad = ""
    cut = False  # its body cut after the answer began (SeaweedFS, a later chunk's CRC)
    gone = False  # and deleted before the HEAD that tells a store silent from it
    read = False  # its bytes were asked for: the HEADs before are answered

    def head(self, container: str, key: str) -> Any:
        if key == self.bad and self.gone and self.read:
            raise NotFound(f"dst: {container}/{key}: not found")
        return self._inner.head(container, key)

    def open_range(self, container: str, key: str, *args: Any, **kw: Any) -> Any:
        self.read = self.read or key == self.bad
        if key == self.bad and not self.cut:
            raise Retryable(f"dst: {container}/{key}: GetObject failed with InternalError")
        stream = self._inner.open_range(container, key, *args, **kw)
        return _CutBody(stream) if key == self.bad else stream


class _CutBody:
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def read(self, size: int = -1, /) -> bytes:
        raise NoAnswer("dst: connection interrupted (ProtocolError)")


@pytest.mark.parametrize("cut", [False, True])
def test_a_source_object_that_cannot_be_read_is_a_finding_of_deep_both(
    env_for: Any, cut: bool
) -> None:
    """--deep=both re-reads the source: one object it cannot serve (500s, or its body cut
    at every try while it answers) stopped the whole verification, exit 6, nothing recorded
    (a review). It is that object's finding, unproven and not copied again (a copy of those
    bytes would be no better), and the others are checked."""
    env: Env = env_for("s3", "s3")
    plan = copied(env)
    failing = FailsItsOwnChecksum(env.source)
    failing.bad, failing.cut = sorted(ESTATE)[1], cut
    result = check(env, plan, deep="both", source=failing, sleep=lambda s: None)
    assert not result.passed and named(result) == [("unreadable", failing.bad)]
    assert "the source's bytes could not be read" in result.findings[0].detail
    assert result.to_copy_again == 0 and result.source_reread == len(ESTATE) - 1


class Silent(Delegating):
    """A destination that lists, then answers nothing: every read and HEAD times out."""

    def open_range(self, container: str, key: str, *args: Any, **kw: Any) -> Any:
        raise NoAnswer(f"dst: {container}/{key}: read timed out")

    def head(self, container: str, key: str) -> Any:
        raise NoAnswer(f"dst: {container}/{key}: read timed out")


def test_a_store_that_stops_answering_stops_a_deep_verify_with_no_finding(
    env_for: Any,
) -> None:
    """A store silent is no object's fault: the verification stops (exit 6), marking no
    copy unreadable (each would be copied again)."""
    env: Env = env_for("s3", "s3")
    plan = copied(env)
    with pytest.raises(NoAnswer):
        check(env, plan, deep=True, destination=Silent(env.destination), sleep=lambda s: None)
    with Ledger(env.state) as ledger:
        counts = {c.state: c.objects for c in ledger.phase_counts(plan.name, "bulk-1")}
    assert set(counts) == {"done"}, counts


@pytest.mark.parametrize("how", ["answered 500", "body cut", "body cut, then gone"])
def test_an_object_that_cannot_be_read_back_is_a_finding_and_the_others_are_checked(
    env_for: Any, how: str
) -> None:
    """`--deep` re-reads every copy: one the store cannot serve is not proven (unreadable,
    marked to copy again), and does not stop the verification of the others (it did: the
    whole verify ended in exit 6, recording nothing; and again, an audit found, for a body
    cut at every try while the store answered)."""
    env: Env = env_for("s3", "s3")
    plan = copied(env)
    failing = FailsItsOwnChecksum(env.destination)
    failing.bad = sorted(ESTATE)[1]
    failing.cut = how.startswith("body cut")
    failing.gone = how.endswith("gone")
    result = check(env, plan, deep=True, destination=failing, sleep=lambda s: None)
    if failing.gone:  # not unreadable: missing (a review)
        assert named(result) == [("missing", failing.bad)]
        return
    assert not result.passed and named(result) == [("unreadable", failing.bad)]
    assert "could not be read" in result.findings[0].detail
    assert result.reread == len(ESTATE) - 1  # every other object was re-read
    with Ledger(env.state) as ledger:
        assert ledger.phase_state("t", "bulk-1").verified_at is None
    # Its source deleted before the copy that would mend it: never taken for a proven
    # copy (the manifest leaves it out), as bytes found other would not be.
    env.source.delete(env.container, failing.bad)
    run_inventory(env.config, env.source_site.name, env.source, resume=False)
    env.run(plan)
    with Ledger(env.state) as ledger:
        assert failing.bad not in {r.key for r in ledger.manifest_rows(plan.name)}


@pytest.mark.parametrize("dst", ["s3", "azure"])
def test_an_expires_header_arrives_and_its_loss_is_found(env_for: Any, dst: str) -> None:
    """An S3 object's Expires, one PUT and multipart (two write paths), arrives and passes
    `--metadata`; its loss is found. An Azure destination has no such header: its absence
    is not held against the copy."""
    env: Env = env_for("s3", dst)
    when = "Tue, 01 Jan 2030 01:00:00 +0100"  # 00:00 GMT, written another way
    put(env.source, env.container, "web/one.html", b"<p>hi</p>", content_type="text/html",
        expires=when)  # fmt: skip
    put(env.source, env.container, "web/big.bin", body(3, 11 * MiB), multipart=True,
        expires=when)  # fmt: skip
    plan = env.plan()
    assert env.run(plan).copied == 2
    result = check(env, plan, check_metadata=True)
    assert result.passed and result.metadata_compared == 2, result.findings
    if dst == "azure":
        return
    # Written again at the destination without it: the copy lost it, and verify says so.
    head = env.destination.head(env.bucket, "web/one.html")
    put(env.destination, env.bucket, "web/one.html", b"<p>hi</p>", content_type="text/html",
        meta=dict(head.metadata or {}))  # fmt: skip
    result = check(env, plan, check_metadata=True)
    assert named(result) == [("metadata_mismatch", "web/one.html")], result.findings
    assert "expires None" in result.findings[0].detail, result.findings


def test_expires_values_are_the_same_when_they_name_the_same_moment() -> None:
    """One write path sends an Expires as given, another (botocore's: multipart, the
    server-side copy writing migrate-sha256) as an HTTP date of its own: verify compares
    the moment, not the text (a review found the text compared, a copy again forever)."""
    from migrate.verify import _same_moment

    gmt = "Tue, 01 Jan 2030 00:00:00 GMT"
    assert _same_moment("Tue, 01 Jan 2030 01:00:00 +0100", gmt)
    assert _same_moment("2030-01-01T00:00:00Z", gmt)
    assert _same_moment("0", "Thu, 01 Jan 1970 00:00:00 GMT")  # as botocore reads "0"
    assert not _same_moment(gmt, "")  # lost
    assert not _same_moment("", gmt)  # added
    assert not _same_moment(gmt, "Wed, 02 Jan 2030 00:00:00 GMT")
    assert _same_moment("soon", "")  # no date: no write path carries it alike

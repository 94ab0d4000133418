"""Delta and cutover through real servers: after the bulk copy is verified, a changed and a
new source object are copied by delta (and nothing else), a deleted one is reported and
removed at the destination only on request, verification passes before and after, and
cutover with nothing changed has nothing to do; an object that comes back at the source
after its copy was removed is copied again. Once through the library (Azurite and S3
sources), once through the commands a user runs."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from migrate.cli import main
from migrate.delta import cutover_checklist, deleted_at_source, prepare_delta, remove_deleted
from migrate.demo import AZURE_ENV, S3_KEY_ENV, S3_SECRET_ENV, write_sites_file
from migrate.errors import (
    ConfigError,
    CredentialsRejected,
    MigrateError,
    PlanError,
    Retryable,
    SourceChanged,
)
from migrate.executor import run_phase
from migrate.inventory import run_inventory
from migrate.ledger import DeletedRow, Ledger
from migrate.localservers import Azurite, SeaweedFS
from migrate.plan import Phase, PhaseKind, Plan, Selector, load_plan
from migrate.planner import plan_inputs
from migrate.report import build_report, render_html
from migrate.sites import load_sites
from migrate.verify import VerifyResult, verify
from providers.base import StoreAdapter, WriteAttrs
from providers.catalog import builtin_catalog
from providers.factory import build_adapter
from tests.conftest import SiteFactory, unique_name
from tests.helpers import body, put, two_local_sites
from tests.test_executor import (
    SMALL_PARTS,
    Crash,
    CrashBeforeComplete,
    Delegating,
    Env,
    MiB,
    UploadListingFails,
)

CHECKLIST = ("Stop every writer at the source", "Switch the applications over")
ESTATE = {f"d/{i:02d}.bin": (body(i, 1000 + i), "application/octet-stream", {}, False)
          for i in range(6)}  # fmt: skip


@pytest.fixture
def env_for(site_for: SiteFactory, tmp_path: Path) -> Any:
    def make(source: str, destination: str) -> Env:
        return Env(site_for(source), site_for(destination), tmp_path)

    return make


def bulk_copied(env: Env, ledger: Ledger) -> Plan:
    """The estate copied by bulk-1 and verified; the plan has delta and cutover after it."""
    env.seed(ESTATE)
    plan = env.plan().model_copy(
        update={
            "phases": (
                Phase(name="bulk-1", kind=PhaseKind.BULK),
                Phase(
                    name="delta",
                    kind=PhaseKind.DELTA,
                    requires=("bulk-1",),
                    selector=Selector(changed_since_copy=True),
                ),
                Phase(
                    name="cutover",
                    kind=PhaseKind.CUTOVER,
                    requires=("delta",),
                    selector=Selector(changed_since_copy=True),
                    checklist=CHECKLIST,
                ),
            )
        }
    )
    summary = run(env, ledger, plan, "bulk-1")
    assert (summary.copied, summary.failed) == (len(ESTATE), 0)
    with pytest.raises(PlanError, match="requires bulk-1 to be verified"):
        run(env, ledger, plan, "delta")  # the gate holds until bulk is verified
    assert check(env, ledger, plan, "bulk-1").passed
    return plan


def bulk_then_delta(env: Env) -> Plan:
    """The plan of the estate the source holds now: bulk-1, then a delta."""
    return env.plan().model_copy(update={"phases": (
        Phase(name="bulk-1", kind=PhaseKind.BULK),
        Phase(name="delta", kind=PhaseKind.DELTA, requires=("bulk-1",),
              selector=Selector(changed_since_copy=True)),
    )})  # fmt: skip


def run(env: Env, ledger: Ledger, plan: Plan, phase: str, **kw: Any) -> Any:
    return run_phase(plan, phase, ledger, env.source, env.destination, config=SMALL_PARTS,
                     sleep=lambda s: None, **kw)  # fmt: skip


def check(env: Env, ledger: Ledger, plan: Plan, phase: str | None, **kw: Any) -> VerifyResult:
    return verify(plan, ledger, env.source, env.destination, phase=phase,
                  deep=kw.pop("deep", False), sample=None, seed=3, **kw)  # fmt: skip


def destination_keys(env: Env) -> set[str]:
    return {o.key for o in env.destination.list_objects(env.bucket)}


def test_a_container_taken_out_of_the_sites_file_leaves_the_inventory_and_delta_says_so(
    env_for: Any,
) -> None:
    """A container taken out of the source's `buckets` is left out of the inventory (a plan
    made then does not copy it), its objects not counted as deleted at the source (copies of
    them are never taken for deletions' to remove). A plan made before, which copies it,
    is refused by delta and cutover, naming the container (exit 3): its old rows would pass
    for current, what changed there unseen, and cutover would say ready."""
    env: Env = env_for("s3", "s3")
    with Ledger(env.state) as ledger:
        plan = bulk_copied(env, ledger)
        put(env.source, env.container, "d/01.bin", body(99, 2500))  # changed, to be seen
        site = env.config.site(env.source_site.name)
        other = unique_name("other")
        env.source.create_container(other)
        put(env.source, other, "x/1.bin", body(1, 10))
        put(env.source, other, "x/2.bin", body(2, 10))

        def listing(*containers: str) -> Any:
            listed = site.model_copy(update={"buckets": containers})
            return env.config.model_copy(update={"sites": {**env.config.sites, site.name: listed}})

        both = run_inventory(listing(env.container, other), site.name, env.source)
        assert f"{other}/x/" in {d.dataset for d in both.datasets} and both.unlisted == 0
        one = run_inventory(listing(env.container), site.name, env.source)
        assert (one.unlisted, one.unlisted_containers, one.deleted) == (2, [other], 0)
        assert {d.dataset for d in one.datasets} == {f"{env.container}/d/"}

        without = listing(other)
        left = run_inventory(without, site.name, env.source)
        assert (left.unlisted, left.unlisted_containers, left.deleted) == (6, [env.container], 0)
        assert ledger.deleted_at_source_count(plan.name, plan.source) == 0
        for phase in ("delta", "cutover"):
            with pytest.raises(ConfigError, match=f"no longer lists '{env.container}'") as e:
                prepare_delta(without, plan, ledger, env.source, phase=phase)
            assert e.value.exit_code == 3 and "add it back" in str(e.value)
        # Listed again: nothing taken for added, only what changed since the copy to copy.
        delta = prepare_delta(env.config, plan, ledger, env.source, phase="delta")
        assert (delta.added, delta.changed, delta.deleted) == (0, 0, 0)
        assert (delta.to_copy_new, delta.to_copy_changed) == (0, 1)
        assert run(env, ledger, plan, "delta").copied == 1


def test_a_phase_resolved_before_its_container_was_unlisted_still_copies_it(
    env_for: Any,
) -> None:
    """Objects of a container the sites file no longer lists are left out of the inventory,
    not known deleted: a phase that took them before still copies them (they were settled
    as gone at the source, and the phase dropped them all, reporting success)."""
    env: Env = env_for("s3", "s3")
    env.seed(ESTATE)
    plan = env.plan()
    site = env.config.site(env.source_site.name)
    elsewhere = site.model_copy(update={"buckets": (unique_name("other"),)})
    env.source.create_container(elsewhere.buckets[0])
    with Ledger(env.state) as ledger:
        assert ledger.resolve_phase(plan, plan.phase("bulk-1")) == len(ESTATE)
    config = env.config.model_copy(update={"sites": {**env.config.sites, site.name: elsewhere}})
    assert run_inventory(config, site.name, env.source).unlisted == len(ESTATE)
    with Ledger(env.state) as ledger:
        summary = run(env, ledger, plan, "bulk-1")
    assert (summary.objects, summary.copied, summary.failed) == (len(ESTATE),) * 2 + (0,)


def test_a_delta_stopped_mid_copy_whose_object_changed_again_copies_the_latest(
    env_for: Any,
) -> None:
    """A delta run dies with an upload under way; the object changes again at the source.
    The next delta run re-lists, and copies the latest bytes (it read the object with the
    ETag the stopped run had seen, failed it as changed and exited 0: its bytes stale until
    yet another run); the stopped run's upload is aborted, by its id: not left behind even
    where the store refuses to list unfinished uploads."""
    env: Env = env_for("s3", "s3")
    with Ledger(env.state) as ledger:
        plan = bulk_copied(env, ledger)
        put(env.source, env.container, "d/02.bin", body(50, 11 * MiB))  # three parts
        prepare_delta(env.config, plan, ledger, env.source, phase="delta")
        with pytest.raises(Crash):
            run_phase(plan, "delta", ledger, env.source, CrashBeforeComplete(env.destination),
                      config=SMALL_PARTS, sleep=lambda s: None)  # fmt: skip
        assert len(list(env.destination.list_multipart_uploads(env.bucket))) == 1
        latest = body(51, 11 * MiB)
        put(env.source, env.container, "d/02.bin", latest)

        prepare_delta(env.config, plan, ledger, env.source, phase="delta")
        refused = CredentialsRejected("dst: credentials rejected (AccessDenied)")
        unlisted = UploadListingFails(env.destination, refused, times=1000, after=0)
        summary = run_phase(plan, "delta", ledger, env.source, unlisted, config=SMALL_PARTS,
                            sleep=lambda s: None)  # fmt: skip

        assert (summary.copied, summary.changed, summary.failed) == (1, 0, 0), summary.failures
        assert summary.unswept, "the sweep was refused: the upload went by its id"
        assert env.read_destination("d/02.bin") == latest
        assert list(env.destination.list_multipart_uploads(env.bucket)) == []


@pytest.mark.parametrize("src", ["azure", "s3"])
def test_delta_copies_exactly_the_changed_and_the_added(env_for: Any, src: str) -> None:
    env: Env = env_for(src, "s3")
    with Ledger(env.state) as ledger:
        plan = bulk_copied(env, ledger)
        put(env.source, env.container, "d/01.bin", body(99, 2500))  # changed: other bytes
        put(env.source, env.container, "d/new.bin", body(100, 700))  # added
        env.source.delete(env.container, "d/04.bin")  # deleted

        delta = prepare_delta(env.config, plan, ledger, env.source, phase="delta")
        assert (delta.added, delta.changed, delta.deleted, delta.removed) == (1, 1, 1, 0)
        assert (delta.phase, delta.to_copy_new, delta.to_copy_changed) == ("delta", 1, 1)
        assert [(r.key, r.destination_key) for r in delta.deleted_examples] == [
            ("d/04.bin", "d/04.bin")
        ]
        summary = run(env, ledger, plan, "delta")
        assert (summary.objects, summary.copied, summary.failed) == (2, 2, 0)
        assert env.read_destination("d/01.bin") == body(99, 2500)
        assert env.read_destination("d/new.bin") == body(100, 700)
        assert "d/04.bin" in destination_keys(env)  # reported, kept: no --delete-removed
        assert check(env, ledger, plan, "delta", deep=True).passed
        assert check(env, ledger, plan, None).passed

        assert remove_deleted(plan, ledger, env.source, env.destination) == 1
        assert "d/04.bin" not in destination_keys(env)
        assert list(deleted_at_source(plan, ledger)) == []
        assert remove_deleted(plan, ledger, env.source, env.destination) == 0  # nothing left to do
        whole = check(env, ledger, plan, None, deep=True)
        assert whole.passed and whole.objects == len(ESTATE)  # 6 - 1 deleted + 1 added
        assert "d/04.bin" not in {r.key for r in ledger.manifest_rows(plan.name)}

        cut = prepare_delta(env.config, plan, ledger, env.source, phase="cutover")
        assert (cut.added, cut.changed, cut.deleted) == (0, 0, 0)
        assert (cut.to_copy_new, cut.to_copy_changed) == (0, 0)
        summary = run(env, ledger, plan, "cutover")
        assert (summary.objects, summary.copied, summary.failed) == (0, 0, 0)
        assert check(env, ledger, plan, "cutover").passed
        assert check(env, ledger, plan, None).passed
        assert cutover_checklist(plan) == list(CHECKLIST)

        # A removed copy put back at the destination by someone else is named by verify.
        put(env.destination, env.bucket, "d/04.bin", body(4, 1004))
        result = check(env, ledger, plan, None)
        assert not result.passed
        assert [(f.kind, f.key) for f in result.findings] == [("unexpected", "d/04.bin")]


def test_delta_copies_metadata_rewritten_in_place_at_an_s3_source(env_for: Any) -> None:
    """S3 changes an object's metadata by a copy onto itself: the same bytes, the same ETag,
    a later modification time. delta takes it and the destination gets the new metadata."""
    env: Env = env_for("s3", "s3")
    with Ledger(env.state) as ledger:
        plan = bulk_copied(env, ledger)
        key = "d/02.bin"
        before = env.source.head(env.container, key)
        time.sleep(1.1)  # SeaweedFS keeps modification times to the second
        env.source.replace_metadata(
            env.container,
            key,
            WriteAttrs(content_type="application/x-study", metadata={"status": "withdrawn"}),
            if_match=before.etag or "",
            size=before.size,
        )
        assert env.source.head(env.container, key).etag == before.etag
        delta = prepare_delta(env.config, plan, ledger, env.source, phase="delta")
        # counted changed by the re-list as by the copy (it said "0 changed", then copied
        # one "changed at the source since": a walkthrough)
        assert (delta.changed, delta.to_copy_changed) == (1, 1)
        summary = run(env, ledger, plan, "delta")
        assert (summary.objects, summary.copied, summary.failed) == (1, 1, 0)
        # Its earlier copy, the same bytes, is this plan's: not another writer's object
        # replaced (a review found it counted and recorded so).
        assert summary.same_bytes_replaced == 0
        assert ledger.overwritten(plan.name, "delta", 10) == ([], 0)
        copy = env.destination.head(env.bucket, key)
        assert (copy.metadata or {}).get("status") == "withdrawn"
        assert copy.content_type == "application/x-study"
        assert env.read_destination(key) == ESTATE[key][0]
        again = prepare_delta(env.config, plan, ledger, env.source, phase="cutover")
        assert again.to_copy_changed == 0  # copied once, not at every delta


class _Versioned:
    """The source as a versioned bucket lists it: each object with a version id, which a
    rewrite changes even where the ETag, size and time to the second stay the same."""

    def __init__(self, inner: StoreAdapter) -> None:
        self.inner, self.rewritten = inner, set[str]()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _versioned(self, obj: Any) -> Any:
        return dataclasses.replace(obj, version_id=f"v{2 if obj.key in self.rewritten else 1}")

    def list_objects(self, *args: Any, **kw: Any) -> Any:
        return (self._versioned(o) for o in self.inner.list_objects(*args, **kw))

    def head(self, container: str, key: str) -> Any:
        return self._versioned(self.inner.head(container, key))

    def open_range(self, *args: Any, version_id: str | None = None, **kw: Any) -> Any:
        return self.inner.open_range(*args, **kw)


def test_delta_copies_an_object_rewritten_within_the_second_of_its_copy(env_for: Any) -> None:
    """Times are kept to the second: a rewrite of the same bytes with other metadata in the
    same second keeps the ETag, size and time. A versioned bucket gives it a new version."""
    env: Env = env_for("s3", "s3")
    env.source = _Versioned(env.source)  # type: ignore[assignment]
    with Ledger(env.state) as ledger:
        plan = bulk_copied(env, ledger)
        env.source.rewritten.add("d/03.bin")  # type: ignore[attr-defined]
        delta = prepare_delta(env.config, plan, ledger, env.source, phase="delta")
        assert delta.to_copy_changed == 1
        summary = run(env, ledger, plan, "delta")
        assert (summary.objects, summary.copied, summary.failed) == (1, 1, 0)
        again = prepare_delta(env.config, plan, ledger, env.source, phase="cutover")
        assert again.to_copy_changed == 0


class FailingDelete:
    """A destination whose deletes of one key fail as a store's transient error would."""

    def __init__(self, inner: StoreAdapter, key: str) -> None:
        self._inner, self._key = inner, key

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def delete(self, container: str, key: str) -> None:
        if key == self._key:
            raise Retryable("503 Slow Down (injected)")
        self._inner.delete(container, key)


def test_verify_of_the_cutover_fails_while_the_source_holds_a_dataset_outside_the_plan(
    env_for: Any,
) -> None:
    """The cutover's checklist asks for its verification to pass before switching over:
    not while the source holds a dataset no phase copies (the cutover's run says so too)."""
    env: Env = env_for("s3", "s3")
    with Ledger(env.state) as ledger:
        plan = bulk_copied(env, ledger)
        prepare_delta(env.config, plan, ledger, env.source, phase="delta")
        assert run(env, ledger, plan, "delta").failed == 0
        assert check(env, ledger, plan, "delta").passed
        put(env.source, env.container, "newset/a.csv", body(7, 300))
        cut = prepare_delta(env.config, plan, ledger, env.source, phase="cutover")
        assert [d.dataset for d in cut.unplanned] == [f"{env.container}/newset/"]
        assert run(env, ledger, plan, "cutover").failed == 0
        result = check(env, ledger, plan, "cutover")
        assert not result.passed
        # of a source dataset: no destination object
        assert [(f.kind, f.bucket, f.key, f.source) for f in result.findings] == [
            ("outside_plan", "", "", f"{env.container}/newset/")
        ]
        assert "1 object (300 bytes) at the source" in result.findings[0].detail
        page = render_html(build_report(plan, ledger, builtin_catalog(), date.today(), "0"))
        assert f"source <code>{env.container}/newset/</code>" in page
        assert ledger.phase_state(plan.name, "cutover").verified_at is None
        # The whole plan's verification: its objects are right, the cutover stays unmarked.
        whole = check(env, ledger, plan, None)
        assert whole.passed and "cutover" not in whole.verified_phases
        assert whole.held_back == ("cutover",)  # and says so (the CLI prints it)
        assert ledger.phase_state(plan.name, "cutover").verified_at is None
        assert ledger.phase_state(plan.name, "delta").verified_at is not None


def cut_over(env: Env, ledger: Ledger) -> Plan:
    """bulk-1, delta and cutover copied and each verified."""
    plan = bulk_copied(env, ledger)
    for phase in ("delta", "cutover"):
        prepare_delta(env.config, plan, ledger, env.source, phase=phase)
        assert run(env, ledger, plan, phase).failed == 0
        assert check(env, ledger, plan, phase).passed
    return plan


def test_a_cutover_that_left_an_object_changed_is_not_verified(env_for: Any) -> None:
    """Changed at the source during the cutover's own copy, an object is left to no later
    phase: the cutover's and the whole plan's verifications fail on it (not_done), and the
    estate may not switch over (a mutation review: taking it for the delta's work, as a
    bulk phase's verification does, passed every test)."""
    import sqlite3

    env: Env = env_for("s3", "s3")
    with Ledger(env.state) as ledger:
        plan = bulk_copied(env, ledger)
        for phase in ("delta", "cutover"):
            env.seed({"d/02.bin": (body(50 + len(phase), 1500), "application/octet-stream",
                                   {}, False)})  # fmt: skip
            prepare_delta(env.config, plan, ledger, env.source, phase=phase)
            assert run(env, ledger, plan, phase).failed == 0
            if phase == "delta":
                assert check(env, ledger, plan, phase).passed
        with contextlib.closing(sqlite3.connect(env.state / "state.db")) as db, db:
            changed = db.execute(
                "UPDATE transfers SET state='changed', error='changed since it was listed' "
                "WHERE phase='cutover' AND key='d/02.bin'"
            ).rowcount
        assert changed == 1
        for phase in ("cutover", None):
            result = check(env, ledger, plan, phase)
            assert not result.passed and result.counts.get("not_done") == 1, (phase, result)
        assert ledger.phase_state(plan.name, "cutover").verified_at is None


def test_a_dataset_appearing_after_the_cutover_passed_takes_its_mark(env_for: Any) -> None:
    """The cutover passed; then a dataset no phase copies appears at the source and is
    inventoried. The whole plan's verification passes (its objects are right) but holds
    the cutover back: the cutover loses its earlier mark too."""
    env: Env = env_for("s3", "s3")
    with Ledger(env.state) as ledger:
        plan = cut_over(env, ledger)
        assert ledger.phase_state(plan.name, "cutover").verified_at is not None
        put(env.source, env.container, "newset/a.csv", body(7, 300))
        run_inventory(env.config, env.source_site.name, env.source)
        whole = check(env, ledger, plan, None)
        assert whole.passed and whole.held_back == ("cutover",)
        assert ledger.phase_state(plan.name, "cutover").verified_at is None
        assert ledger.phase_state(plan.name, "delta").verified_at is not None
        # Marked again (a verification of the cutover alone would refuse: outside_plan),
        # then a whole-plan verification failing for an unfinished object, nothing wrong at
        # the destination: it takes the cutover's mark all the same (a review).
        ledger._db.execute(
            "UPDATE phases SET verified_at = '2026-12-04T00:00:00+00:00' WHERE phase = 'cutover'"
        )
        key = ledger._db.execute("SELECT key FROM transfers WHERE phase = 'bulk-1'").fetchone()[0]
        ledger._db.execute(
            "UPDATE transfers SET state = 'failed', error = 'injected' WHERE key = ?", (key,)
        )
        failing = check(env, ledger, plan, None)
        assert not failing.passed
        assert ledger.phase_state(plan.name, "cutover").verified_at is None


def test_an_object_found_wrong_in_any_phase_takes_the_cutovers_mark(env_for: Any) -> None:
    """The cutover's mark says the estate may switch over. An object of bulk-1 lost at the
    destination after the cutover passed: the verification that finds it (of bulk-1, or of
    the whole plan) takes the mark from bulk-1 and from the cutover; delta keeps its own."""
    env: Env = env_for("s3", "s3")
    with Ledger(env.state) as ledger:
        plan = cut_over(env, ledger)
        for scope in ("bulk-1", None):
            whole = check(env, ledger, plan, None)
            assert whole.passed, whole.findings
            assert ledger.phase_state(plan.name, "cutover").verified_at is not None
            env.destination.delete(env.bucket, "d/03.bin")
            result = check(env, ledger, plan, scope)
            assert not result.passed and result.counts == {"missing": 1}, result.counts
            assert ledger.phase_state(plan.name, "bulk-1").verified_at is None
            assert ledger.phase_state(plan.name, "cutover").verified_at is None
            assert ledger.phase_state(plan.name, "delta").verified_at is not None
            assert run(env, ledger, plan, "bulk-1").copied == 1  # copied again


def found_wrong(ledger: Ledger, plan: str, phase: str | None = None) -> int:
    """Transfers a verification sent back to be copied again, as the report counts them."""
    return sum(
        s.objects
        for s in ledger.transfer_stats(plan)
        if s.state == "found_wrong" and phase in (None, s.phase)
    )


def test_the_cutover_copies_what_a_verification_found_wrong_in_an_earlier_phase(
    env_for: Any,
) -> None:
    """In the freeze, the cutover's run copies again an earlier phase's copy a verification
    found wrong, rather than leave it to that phase's run and then fail the whole plan's
    verification, "do not switch over" (a walkthrough)."""
    env: Env = env_for("s3", "s3")
    with Ledger(env.state) as ledger:
        plan = cut_over(env, ledger)
        env.destination.delete(env.bucket, "d/03.bin")
        assert check(env, ledger, plan, None).counts == {"missing": 1}
        assert found_wrong(ledger, plan.name, "bulk-1") == 1
        again = prepare_delta(env.config, plan, ledger, env.source, phase="cutover")
        assert again.to_copy_changed == 1, again
        summary = run(env, ledger, plan, "cutover")
        assert (summary.copied, summary.failed) == (1, 0)
        assert found_wrong(ledger, plan.name) == 0
        assert env.read_destination("d/03.bin") == ESTATE["d/03.bin"][0]
        # bulk-1, left with nothing to copy, is finished again (verify cleared its mark)
        assert ledger.phase_state(plan.name, "bulk-1").finished_at is not None
        assert check(env, ledger, plan, None).passed


class _StopsListing:
    """The source, whose listing stops (Ctrl-C, a lost connection) after `after` objects."""

    def __init__(self, inner: StoreAdapter, after: int) -> None:
        self.inner, self.after = inner, after

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def list_objects(self, *args: Any, **kw: Any) -> Any:
        for n, obj in enumerate(self.inner.list_objects(*args, **kw)):
            if n == self.after:
                raise KeyboardInterrupt
            yield obj


def test_a_delta_after_an_interrupted_re_list_still_sees_every_change(
    env_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    env: Env = env_for("s3", "s3")
    monkeypatch.setattr("migrate.inventory.PAGE", 2)  # pages of the listing get recorded
    with Ledger(env.state) as ledger:
        plan = bulk_copied(env, ledger)
        # A first re-list stops after four objects (d/00 to d/03 recorded); the source is
        # still written to: d/00.bin, listed already, changes.
        with pytest.raises(KeyboardInterrupt):
            prepare_delta(env.config, plan, ledger, _StopsListing(env.source, 4))  # type: ignore[arg-type]
        put(env.source, env.container, "d/00.bin", body(77, 1000))

        cut = prepare_delta(env.config, plan, ledger, env.source, phase="delta")
        assert (cut.changed, cut.to_copy_changed) == (1, 1)
        summary = run(env, ledger, plan, "delta")
        assert (summary.copied, summary.failed) == (1, 0)
        assert env.read_destination("d/00.bin") == body(77, 1000)

    # A plain inventory never resumes the run the re-list abandoned: nothing is lost either.
    with Ledger(env.state) as ledger:
        _, resumed = ledger.open_inventory_run(env.source_site.name, "")
        assert not resumed


def test_a_failed_removal_is_kept_and_an_object_back_at_the_source_is_copied_again(
    env_for: Any,
) -> None:
    env: Env = env_for("s3", "s3")
    with Ledger(env.state) as ledger:
        plan = bulk_copied(env, ledger)
        env.source.delete(env.container, "d/02.bin")
        env.source.delete(env.container, "d/03.bin")
        assert prepare_delta(env.config, plan, ledger, env.source).deleted == 2
        errors: list[tuple[DeletedRow, MigrateError]] = []
        flaky: Any = FailingDelete(env.destination, "d/03.bin")
        removed = remove_deleted(
            plan, ledger, env.source, flaky, on_error=lambda r, e: errors.append((r, e))
        )
        assert removed == 1 and [r.key for r, _ in errors] == ["d/03.bin"]
        assert destination_keys(env) == set(ESTATE) - {"d/02.bin"}
        assert [r.key for r in deleted_at_source(plan, ledger)] == ["d/03.bin"]
        assert ledger.deleted_at_source_count(plan.name, plan.source) == 1
        assert check(env, ledger, plan, None).passed  # the kept copy is still a good copy
        assert remove_deleted(plan, ledger, env.source, env.destination) == 1

        summary = run(env, ledger, plan, "delta")
        assert (summary.objects, summary.copied) == (0, 0)
        assert check(env, ledger, plan, "delta").passed
        put(env.source, env.container, "d/02.bin", body(42, 900))  # back, other bytes
        cut = prepare_delta(env.config, plan, ledger, env.source, phase="cutover")
        assert (cut.added, cut.to_copy_new, cut.to_copy_changed) == (1, 0, 1)
        summary = run(env, ledger, plan, "cutover")
        assert (summary.objects, summary.copied, summary.failed) == (1, 1, 0)
        assert env.read_destination("d/02.bin") == body(42, 900)
        assert check(env, ledger, plan, None, deep=True).passed


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().out


@pytest.mark.slow
def test_delta_copies_what_changed_and_cutover_verifies(
    azurite_server: Azurite, seaweed: SeaweedFS, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv(AZURE_ENV, azurite_server.connection_string)
    monkeypatch.setenv(S3_KEY_ENV, seaweed.access_key)
    monkeypatch.setenv(S3_SECRET_ENV, seaweed.secret_key)
    sites = write_sites_file(tmp_path, azurite_server, seaweed)
    # Fresh containers and buckets for this test: the servers are shared by the session.
    text = sites.read_text().replace('"snds", "cohorts", "imaging"', '"dsnds", "dcohorts"')
    sites.write_text(text.replace('bucket_prefix = "hdh-"', 'bucket_prefix = "delta-"'))
    source = build_adapter(load_sites(sites).site("azure-hdh"))
    for container in ("dsnds", "dcohorts"):
        source.create_container(container)
        for i in range(12):
            put(source, container, f"t/{i:02d}.csv", body(i, 1000 + i))
    s = ["--sites", str(sites)]
    plan = str(tmp_path / "plans" / "d.yaml")
    assert cli(capsys, "inventory", "azure-hdh", *s)[0] == 0
    assert cli(capsys, "plan", "--from", "azure-hdh", "--to", "chu-seaweed", "-o", plan, *s)[0] == 0
    assert cli(capsys, "plan", "approve", plan, *s)[0] == 0
    assert cli(capsys, "run", plan, "--phase", "pilot", *s)[0] == 0
    assert cli(capsys, "verify", plan, "--phase", "pilot", *s)[0] == 0
    assert cli(capsys, "run", plan, "--phase", "bulk-1", *s)[0] == 0

    # Before bulk-1 is verified, delta is refused before it lists or removes anything.
    source.delete("dsnds", "t/07.csv")
    with Ledger(load_sites(sites).state_dir) as ledger:
        listings = ledger.latest_inventory_run("azure-hdh")
    code, _ = cli(capsys, "run", plan, "--phase", "delta", "--delete-removed", *s)
    assert code == 9
    destination = build_adapter(load_sites(sites).site("chu-seaweed"))
    assert "t/07.csv" in {o.key for o in destination.list_objects("delta-dsnds")}
    with Ledger(load_sites(sites).state_dir) as ledger:
        assert ledger.latest_inventory_run("azure-hdh") == listings
    put(source, "dsnds", "t/07.csv", body(7, 1007))  # back as it was
    assert cli(capsys, "verify", plan, "--phase", "bulk-1", *s)[0] == 0

    put(source, "dsnds", "t/03.csv", body(99, 2048))  # changed
    put(source, "dcohorts", "t/new.csv", body(100, 500))  # added
    source.delete("dsnds", "t/07.csv")  # deleted
    # The README's way: re-inventory, then what delta would do (the changed object is this
    # plan's earlier copy, another size now: to copy again, not a conflict).
    assert cli(capsys, "inventory", "azure-hdh", *s)[0] == 0
    code, out = cli(capsys, "run", plan, "--phase", "delta", "--dry-run", "--json", *s)
    assert code == 0
    would = json.loads(out)
    totals = [sum(d[k] for d in would["datasets"]) for k in ("would_copy", "conflicts")]
    assert totals == [2, 0], would
    # summed for a script, each count of a dataset's
    assert [would["totals"][k] for k in ("would_copy", "conflicts")] == totals
    assert would["totals"]["objects"] == sum(d["objects"] for d in would["datasets"]) > 0
    # The destination's secret unset: said before the source is listed again (hours, on
    # a large estate), not after.
    with Ledger(load_sites(sites).state_dir) as ledger:
        listings = ledger.latest_inventory_run("azure-hdh")
    monkeypatch.delenv(S3_SECRET_ENV)
    assert main(["run", plan, "--phase", "delta", *s]) == 3
    assert f"{S3_SECRET_ENV} is not set" in capsys.readouterr().err
    with Ledger(load_sites(sites).state_dir) as ledger:
        assert ledger.latest_inventory_run("azure-hdh") == listings
    monkeypatch.setenv(S3_SECRET_ENV, seaweed.secret_key)
    time.sleep(1.1)  # timestamps are to the second: the removal is later than the copy
    code, out = cli(capsys, "run", plan, "--phase", "delta", "--delete-removed", "--json", *s)
    assert code == 0
    result = json.loads(out)
    assert result["copied"] == 2
    assert (result["delta"]["deleted"], result["delta"]["removed"]) == (1, 1)
    destination = build_adapter(load_sites(sites).site("chu-seaweed"))
    keys = {o.key for o in destination.list_objects("delta-dsnds")}
    assert "t/07.csv" not in keys and "t/03.csv" in keys
    stream = destination.open_range("delta-dsnds", "t/03.csv")
    assert stream.read() == body(99, 2048)
    stream.close()
    assert cli(capsys, "verify", plan, "--phase", "delta", *s)[0] == 0
    assert cli(capsys, "verify", plan, *s)[0] == 0

    code, out = cli(capsys, "run", plan, "--phase", "cutover", *s)
    assert code == 0
    assert "nothing to do" in out
    assert "Verification of the whole plan: passed" in out
    assert "Checklist for switching applications over (" in out
    code, out = cli(capsys, "run", plan, "--phase", "cutover", "--json", *s)
    answer = json.loads(out)
    assert code == 0 and (answer["verified"], answer["ready"]) == (True, True), answer
    assert answer["checklist"] == list(load_plan(Path(plan)).phase("cutover").checklist) != []
    # The object removed at the destination is no longer part of the move: still verified.
    report_dir = tmp_path / "report"
    assert cli(capsys, "report", plan, "-o", str(report_dir), *s)[0] == 0
    rep = json.loads((report_dir / "report.json").read_text())
    assert rep["status"] == "verified", [(p["name"], p["verified_at"]) for p in rep["phases"]]
    by_name = {p["name"]: p for p in rep["phases"]}
    for name in ("pilot", "bulk-1"):  # the removal by delta is not part of their copy
        assert by_name[name]["counts"]["finished_at"] <= by_name[name]["finished_at"]

    # A dataset that appeared after the plan was made (a new top-level prefix): no phase
    # copies it, so the cutover says do not switch over, although the plan's own objects
    # verify.
    put(source, "dsnds", "newset/a.csv", body(5, 300))
    code = main(["run", plan, "--phase", "cutover", "--json", *s])
    out, err = capsys.readouterr()
    assert code == 12
    answer = json.loads(out)
    assert (answer["verified"], answer["ready"], answer["checklist"]) == (True, False, [])
    assert [(d["dataset"], d["objects"]) for d in answer["delta"]["unplanned"]] == [
        ("dsnds/newset/", 1)
    ]
    assert err.count("\n") == 1 and "datasets this plan does not have" in err, err
    code, out = cli(capsys, "run", plan, "--phase", "cutover", *s)
    assert code == 12 and "NOT IN THE PLAN: 1 objects" in out and "dsnds/newset/" in out, out
    source.delete("dsnds", "newset/a.csv")

    # A copy the cutover cannot make (another writer's object under its key): the
    # verification is not run, nothing says switch over, and no checklist is printed.
    put(source, "dsnds", "t/late.csv", body(8, 200))
    put(destination, "delta-dsnds", "t/late.csv", b"someone else's")
    code = main(["run", plan, "--phase", "cutover", *s])
    out, err = capsys.readouterr()
    assert code == 11 and "not run (the copy failed): do not switch over" in out, out
    assert "Checklist" not in out and "conflicts" in err, err
    destination.delete("delta-dsnds", "t/late.csv")
    code, out = cli(capsys, "run", plan, "--phase", "cutover", *s)
    assert code == 0 and "Verification of the whole plan: passed" in out, out

    # Lost at the destination after the cutover: cutover run again says do not switch
    # over, and neither cutover nor the phase of the lost object is verified any more.
    destination.delete("delta-dsnds", "t/05.csv")
    code = main(["run", plan, "--phase", "cutover", *s])
    out, err = capsys.readouterr()
    assert code == 12 and "FAILED: do not switch over" in out, out
    assert err.startswith("migrate: error: cutover: the verification of the whole plan failed")
    code, out = cli(capsys, "status", plan, "--json", *s)
    phases = json.loads(out)["phases"]
    assert phases["cutover"]["verified_at"] is None
    # The lost object's phase (the pilot or bulk-1) lost its mark; the other keeps it.
    assert [phases[p]["verified_at"] is None for p in ("pilot", "bulk-1")].count(True) == 1


def test_each_delta_run_takes_what_appeared_or_changed_since_the_last(env_for: Any) -> None:
    """Delta is run again and again while the source is still written to; each run (after
    its re-list) copies what is new or changed since the one before, and the cutover what
    is new since the last delta. Its earlier verification no longer opens the cutover's
    gate once it has new work."""
    env: Env = env_for("s3", "s3")
    with Ledger(env.state) as ledger:
        plan = bulk_copied(env, ledger)
        put(env.source, env.container, "d/new-1.bin", body(101, 600))
        prepare_delta(env.config, plan, ledger, env.source, phase="delta")
        assert run(env, ledger, plan, "delta").copied == 1
        assert check(env, ledger, plan, "delta").passed

        put(env.source, env.container, "d/new-2.bin", body(102, 700))  # appeared since
        put(env.source, env.container, "d/new-1.bin", body(103, 650))  # delta's copy changed
        put(env.source, env.container, "d/gone.bin", body(104, 10))
        env.source.delete(env.container, "d/gone.bin")  # came and went: never listed
        delta = prepare_delta(env.config, plan, ledger, env.source, phase="delta")
        assert (delta.to_copy_new, delta.to_copy_changed) == (1, 1)
        summary = run(env, ledger, plan, "delta")
        assert (summary.objects, summary.copied, summary.failed) == (2, 2, 0)
        assert env.read_destination("d/new-1.bin") == body(103, 650)
        assert env.read_destination("d/new-2.bin") == body(102, 700)
        assert check(env, ledger, plan, "delta").passed

        put(env.source, env.container, "d/new-3.bin", body(105, 800))
        prepare_delta(env.config, plan, ledger, env.source, phase="delta")
        assert ledger.resolve_phase(plan, "delta") == 3  # as its next run does first
        with pytest.raises(PlanError, match="requires delta to be verified"):
            run(env, ledger, plan, "cutover")  # delta has new work: its old check is void
        # Taken by delta, then deleted at the source before delta copied it: it leaves the
        # phase instead of failing every run.
        env.source.delete(env.container, "d/new-3.bin")
        put(env.source, env.container, "d/new-4.bin", body(106, 900))
        cut = prepare_delta(env.config, plan, ledger, env.source, phase="delta")
        assert (cut.to_copy_new, cut.to_copy_changed) == (1, 0)
        summary = run(env, ledger, plan, "delta")
        assert (summary.copied, summary.failed) == (1, 0)
        assert check(env, ledger, plan, "delta").passed

        put(env.source, env.container, "d/new-5.bin", body(107, 300))  # before the cutover
        prepare_delta(env.config, plan, ledger, env.source, phase="cutover")
        summary = run(env, ledger, plan, "cutover")
        assert (summary.copied, summary.failed) == (1, 0)
        assert env.read_destination("d/new-5.bin") == body(107, 300)
        whole = check(env, ledger, plan, None, deep=True)
        assert whole.passed and whole.objects == len(ESTATE) + 4


def test_an_object_deleted_at_the_source_before_delta_copied_it_does_not_hold_the_phase(
    env_for: Any,
) -> None:
    """Changed at the source (delta takes it again), then deleted before delta copied it:
    its earlier copy is reported deleted at the source (removed on request), and delta
    finishes instead of failing it at every run."""
    env: Env = env_for("s3", "s3")
    with Ledger(env.state) as ledger:
        plan = bulk_copied(env, ledger)
        put(env.source, env.container, "d/01.bin", body(99, 2500))  # changed
        delta = prepare_delta(env.config, plan, ledger, env.source, phase="delta")
        assert delta.to_copy_changed == 1
        ledger.resolve_phase(plan, "delta")  # taken by delta (its run dies, say)
        env.source.delete(env.container, "d/01.bin")  # then gone at the source
        delta = prepare_delta(env.config, plan, ledger, env.source, phase="delta")
        assert (delta.to_copy_new, delta.to_copy_changed) == (0, 0)
        summary = run(env, ledger, plan, "delta")
        assert (summary.copied, summary.failed) == (0, 0)
        assert [r.key for r in deleted_at_source(plan, ledger)] == ["d/01.bin"]
        assert check(env, ledger, plan, None).passed  # the earlier copy is still good
        # Its source is gone: nothing proves the bytes read then against it now, and the
        # manifest and its count of such objects say the same.
        proofs = {r.key: r.source_proof for r in ledger.manifest_rows(plan.name)}
        unproven = ledger.unproven_sources(plan.name)
        assert proofs["d/01.bin"] == "none"
        assert unproven[0] == sum(p == "none" for p in proofs.values())
        assert "d/01.bin" in {r.key for r in unproven[1]}
        assert remove_deleted(plan, ledger, env.source, env.destination) == 1
        assert "d/01.bin" not in destination_keys(env)
        assert check(env, ledger, plan, None).passed


def test_a_copy_verify_found_wrong_is_never_settled_as_proven_once_its_source_is_gone(
    env_for: Any,
) -> None:
    """Verify re-reads a copy and finds other bytes (its metadata untouched: bit rot, say),
    and the source object is deleted before the copy that would mend it. The object at the
    destination is not a proven copy: not in the manifest, and verify says so."""
    env: Env = env_for("s3", "s3")
    with Ledger(env.state) as ledger:
        plan = bulk_copied(env, ledger)
        key = "d/02.bin"
        head = env.destination.head(env.bucket, key)
        wrong = bytes(b ^ 0x5A for b in ESTATE[key][0])  # same size, same metadata
        put(env.destination, env.bucket, key, wrong, WriteAttrs(metadata=dict(head.metadata or {})))
        found = check(env, ledger, plan, "bulk-1", deep=True)
        assert [f.kind for f in found.findings] == ["checksum_mismatch"]
        env.source.delete(env.container, key)
        prepare_delta(env.config, plan, ledger, env.source, phase="delta")

        summary = run(env, ledger, plan, "bulk-1")  # settles it: its source is gone
        assert (summary.copied, summary.failed) == (0, 0)
        assert "d/02.bin" not in {r.key for r in ledger.manifest_rows(plan.name)}
        after = check(env, ledger, plan, None)
        assert [(f.kind, f.key) for f in after.findings] == [("unexpected", "d/02.bin")]
        assert "remove it by hand" in after.findings[0].detail  # not "removed by the delta"
        report = build_report(plan, ledger, builtin_catalog(), date(2026, 11, 23), "0.1.0")
    # Left there, not removed: an open item, never counted with the removals.
    bulk = next(p for p in report.phases if p.name == "bulk-1")
    assert (bulk.counts.removed, bulk.counts.left_at_destination) == (0, 1)
    assert (report.totals.removed, report.totals.left_at_destination) == (0, 1)
    assert any("left at the destination, not proven" in i for i in report.open_items)
    assert "(+1 left there)" in render_html(report)

    # Removed by hand, as the open item says: the next verification finds the key empty and
    # the item goes (it stayed forever: a walkthrough).
    env.destination.delete(env.bucket, key)
    with Ledger(env.state) as ledger:
        assert check(env, ledger, plan, None).passed
        report = build_report(plan, ledger, builtin_catalog(), date(2026, 11, 23), "0.1.0")
    bulk = next(p for p in report.phases if p.name == "bulk-1")
    assert (bulk.counts.removed, bulk.counts.left_at_destination) == (1, 0)
    assert not any("left at the destination" in i for i in report.open_items)


@pytest.mark.parametrize("dst", ["s3", "azure"])
def test_delete_removed_deletes_only_this_plans_copy_of_an_object_the_source_lacks_now(
    env_for: Any, dst: str
) -> None:
    """A delete cannot be undone: each is checked just before it. Another writer's object
    under a migrated key stays (D1 of a review: it was deleted); an object back at the
    source since the re-list keeps its copy; a key a file-keeping store may hold under
    another name is never deleted. Each is said, and counted as not removed."""
    env: Env = env_for("s3", dst)
    with Ledger(env.state) as ledger:
        plan = bulk_copied(env, ledger)
        theirs = b"written at the destination by an application after the switch"
        put(env.destination, env.bucket, "d/02.bin", theirs)
        # Another writer's bytes of another size that kept the copy's SHA-256 metadata (an
        # application rewriting an object keeps its metadata): not this plan's copy either
        # (a mutation review: the size check went untested).
        copied = env.destination.head(env.bucket, "d/05.bin").metadata
        rewritten = b"rewritten, the metadata kept"
        put(env.destination, env.bucket, "d/05.bin", rewritten, WriteAttrs(metadata=copied))
        for key in ("d/02.bin", "d/03.bin", "d/04.bin", "d/05.bin"):
            env.source.delete(env.container, key)
        delta = prepare_delta(env.config, plan, ledger, env.source, phase="delta")
        assert delta.deleted == 4
        put(env.source, env.container, "d/03.bin", body(3, 1003))  # back at the source

        kept: list[tuple[str, str]] = []
        removed = remove_deleted(plan, ledger, env.source, env.destination,
                                 on_error=lambda r, e: kept.append((r.key, e.message)))  # fmt: skip

        assert removed == 1 and "d/04.bin" not in destination_keys(env)
        assert env.read_destination("d/02.bin") == theirs
        assert env.read_destination("d/05.bin") == rewritten
        assert "d/03.bin" in destination_keys(env)
        assert [k for k, _ in kept] == ["d/02.bin", "d/03.bin", "d/05.bin"]
        assert "holds an object this plan did not write" in kept[0][1]
        assert f"the source has {env.container}/d/03.bin again" in kept[1][1]
        assert "holds an object this plan did not write" in kept[2][1]


def test_delete_removed_never_deletes_a_key_a_file_keeping_store_holds_as_another(
    env_for: Any,
) -> None:
    """SeaweedFS stores d/a//b as d/a/b: deleting the first deletes the copy of the second,
    whose source is still there (D4 of a review). A run now fails d/a//b (stored under
    another name); its transfer recorded done, as versions before that did, is kept."""
    import sqlite3

    env: Env = env_for("azure", "s3")  # Azure keeps d/a//b and d/a/b apart
    data = body(5, 3000)
    for key in ("d/a/b", "d/a//b"):
        put(env.source, env.container, key, data)
    plan = bulk_then_delta(env)
    with Ledger(env.state) as ledger:
        summary = run(env, ledger, plan, "bulk-1")
        assert (summary.copied, [k for _, k, _ in summary.failures]) == (1, ["d/a//b"])
    db = sqlite3.connect(env.state / "state.db")
    with db:
        db.execute("UPDATE transfers SET state='done', error=NULL WHERE key='d/a//b'")
    db.close()
    with Ledger(env.state) as ledger:
        env.source.delete(env.container, "d/a//b")
        assert prepare_delta(env.config, plan, ledger, env.source, phase="delta").deleted == 1
        # What a dry run announces it would remove: not this one (it said 1, and the run
        # kept it: found by a black-box review).
        assert ledger.deleted_at_source_count(plan.name, plan.source, removable=True) == 0
        kept: list[str] = []
        removed = remove_deleted(plan, ledger, env.source, env.destination,
                                 on_error=lambda r, e: kept.append(e.message))  # fmt: skip
    assert removed == 0 and "a//b is a/b there" in kept[0]
    assert env.read_destination("d/a/b") == data


def test_a_new_key_a_file_keeping_store_holds_as_a_copied_one_does_not_overwrite_it(
    env_for: Any,
) -> None:
    """d/a/b copied; then d/a//b appears at the source, of the same size, neither with an
    MD5 (Azure blobs from blocks). SeaweedFS answers a HEAD of d/a//b with d/a/b's copy,
    which bears migrate's metadata: it was taken for d/a//b's own copy whose record was
    lost, and let be written over (a review). Now it is a conflict, and d/a/b's copy stays."""
    from tests.test_executor import put as put_blob

    env: Env = env_for("azure", "s3")  # Azure keeps d/a//b and d/a/b apart
    put_blob(env.source, env.container, "d/a/b", body(1, 3000), multipart=True)
    plan = bulk_then_delta(env)
    with Ledger(env.state) as ledger:
        assert run(env, ledger, plan, "bulk-1").copied == 1
        assert check(env, ledger, plan, "bulk-1").passed
        put_blob(env.source, env.container, "d/a//b", body(2, 3000), multipart=True)
        prepare_delta(env.config, plan, ledger, env.source, phase="delta")
        summary = run(env, ledger, plan, "delta")
        assert (summary.copied, summary.conflicts) == (0, 1), summary.failures
        assert env.read_destination("d/a/b") == body(1, 3000)
        assert check(env, ledger, plan, "bulk-1").passed
    # Where the check HEADs the key (few keys in a full bucket), what it is answered with
    # is not taken for d/a//b's own copy: that would let the write replace it, and a store
    # that takes no write condition would.
    from migrate.dryrun import classify
    from migrate.ledger import PhaseCandidate

    copy = env.destination.head(env.bucket, "d/a//b")  # d/a/b's, as SeaweedFS answers
    assert copy.key == "d/a//b" and copy.size == 3000
    row = PhaseCandidate(env.container, "d/a//b", f"{env.container}/d/", 3000, "e", None,
                         env.bucket, "d/a//b", "pending", None, None)  # fmt: skip
    assert classify(row, copy)[0] == "conflict"
    assert classify(dataclasses.replace(row, key="d/a/b", destination_key="d/a/b"),
                    copy)[0] == "copy"  # fmt: skip  # (a portable key: its lost record)


def test_a_new_folded_key_does_not_replace_a_copy_on_a_store_without_write_conditions(
    env_for: Any,
) -> None:
    """d/a/b copied and verified; then d/a//b appears at the source, with other bytes of
    the same size. The destination keeps files (SeaweedFS lists d/a//b's place as d/a/b)
    and takes no write condition: the conflict check, which read the bucket's listing, did
    not HEAD d/a//b, so its write landed on d/a/b's copy, still recorded done (a review).
    Keys a store keeping files renames are now HEADed whatever the bucket's size: a
    conflict, and d/a/b's copy stays."""
    from tests.test_executor import RefusesConditions
    from tests.test_executor import put as put_blob

    env: Env = env_for("azure", "s3")
    put_blob(env.source, env.container, "d/a/b", body(1, 3000))
    plan = bulk_then_delta(env)
    with Ledger(env.state) as ledger:
        assert run(env, ledger, plan, "bulk-1").copied == 1
        assert check(env, ledger, plan, "bulk-1").passed
        put_blob(env.source, env.container, "d/a//b", body(2, 3000))
        prepare_delta(env.config, plan, ledger, env.source, phase="delta")
        summary = run_phase(plan, "delta", ledger, env.source,
                            RefusesConditions(env.destination),  # type: ignore[arg-type]
                            config=SMALL_PARTS, sleep=lambda s: None)  # fmt: skip
        assert (summary.copied, summary.conflicts) == (0, 1), summary.failures
        assert env.read_destination("d/a/b") == body(1, 3000)
        assert check(env, ledger, plan, "bulk-1").passed


def test_an_inventory_overtaken_by_a_newer_listing_of_its_site_stops_and_deletes_nothing(
    env_for: Any,
) -> None:
    """A `migrate inventory` in another terminal, still listing when a delta re-lists the
    same source, wrote its older `last_seen` over the delta's: the delta then recorded
    every object deleted at the source (D2 of a review). The older listing now stops (exit
    14) at its next page, and the delta's finds nothing deleted."""
    import threading

    from migrate.errors import InventorySuperseded
    from migrate.inventory import run_inventory

    env: Env = env_for("s3", "s3")
    with Ledger(env.state) as ledger:
        plan = bulk_copied(env, ledger)
    started, go = threading.Event(), threading.Event()
    outcome: list[BaseException] = []

    class Slow:
        def __init__(self, inner: StoreAdapter) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def list_objects(self, *a: Any, **kw: Any) -> Any:
            started.set()
            assert go.wait(60)  # the delta's re-list runs meanwhile
            yield from self.inner.list_objects(*a, **kw)

    def other_terminal() -> None:
        try:
            run_inventory(env.config, env.source_site.name, Slow(env.source))  # type: ignore[arg-type]
        except BaseException as exc:  # the outcome is the test's
            outcome.append(exc)

    other = threading.Thread(target=other_terminal)
    other.start()
    assert started.wait(30)
    with Ledger(env.state) as ledger:
        delta = prepare_delta(env.config, plan, ledger, env.source, phase="delta")
    go.set()
    other.join(60)
    assert delta.deleted == 0
    assert len(outcome) == 1 and isinstance(outcome[0], InventorySuperseded), outcome
    assert outcome[0].exit_code == 14
    with Ledger(env.state) as ledger:
        assert list(deleted_at_source(plan, ledger)) == []


def test_delete_removed_given_to_a_phase_that_removes_nothing_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.helpers import finished_local_copy

    plan, where = finished_local_copy(tmp_path, capsys)
    # Its dry run says so too: it took the option without a word, the run then refused
    # it (a walkthrough).
    for dry in ([], ["--dry-run"]):
        code = main(["run", plan, "--phase", "bulk-1", "--delete-removed", *dry, *where])
        err = capsys.readouterr().err
        assert code == 3 and "only delta and cutover" in err, (dry, err)


def test_an_upload_another_writer_has_under_a_key_already_copied_is_not_aborted(
    env_for: Any,
) -> None:
    """A run aborts the uploads a crash left under keys it still has to write, not an
    application's upload in progress under a key whose copy is done (D6 of a review)."""
    env: Env = env_for("s3", "s3")
    with Ledger(env.state) as ledger:
        plan = bulk_copied(env, ledger)
        theirs = env.destination.create_multipart(env.bucket, "d/02.bin", WriteAttrs())
        part = body(1, 5 * 1024 * 1024)
        env.destination.upload_part(env.bucket, "d/02.bin", theirs, 1, memoryview(part),
                                    len(part), {})  # fmt: skip
        put(env.source, env.container, "d/new.bin", body(100, 700))  # delta has work to do
        prepare_delta(env.config, plan, ledger, env.source, phase="delta")
        assert run(env, ledger, plan, "delta").copied == 1
    left = {(u.key, u.upload_id) for u in env.destination.list_multipart_uploads(env.bucket)}
    assert ("d/02.bin", theirs) in left


def test_delete_removed_leaves_an_azure_blob_with_snapshots_it_did_not_make(
    env_for: Any,
) -> None:
    """Azure refuses to delete a blob that has snapshots unless told to include them;
    migrate told it to, and someone's backups went with the copy (D5 of a review)."""
    import os

    from azure.storage.blob import ContainerClient

    from tests.conftest import AZ_CONN_ENV

    env: Env = env_for("s3", "azure")
    with Ledger(env.state) as ledger:
        plan = bulk_copied(env, ledger)
        container = ContainerClient.from_connection_string(os.environ[AZ_CONN_ENV], env.bucket)
        snapshot = container.get_blob_client("d/02.bin").create_snapshot()["snapshot"]
        env.source.delete(env.container, "d/02.bin")
        prepare_delta(env.config, plan, ledger, env.source, phase="delta")
        kept: list[str] = []
        removed = remove_deleted(plan, ledger, env.source, env.destination,
                                 on_error=lambda r, e: kept.append(e.message))  # fmt: skip
    assert removed == 0 and "has snapshots, which are not migrate's" in kept[0]
    listed = {(b.name, b.snapshot) for b in container.list_blobs(include=["snapshots"])}
    assert ("d/02.bin", snapshot) in listed and ("d/02.bin", None) in listed


def test_a_dry_run_with_delete_removed_says_how_many_copies_it_would_remove(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Deletes cannot be undone: the dry run announces them (D7 of a review: it said
    nothing), from the latest inventory, before any run makes them."""
    from tests.helpers import finished_local_copy

    plan, where = finished_local_copy(tmp_path, capsys)
    (tmp_path / "src" / "data" / "f3.txt").unlink()
    assert main(["inventory", "src", *where]) == 0
    capsys.readouterr()
    dry = ["run", plan, "--phase", "delta", "--dry-run", "--json", "--force", "--reason", "t"]
    assert main([*dry, "--delete-removed", *where]) == 0
    assert json.loads(capsys.readouterr().out)["would_remove"] == 1
    assert main([*dry, *where]) == 0
    assert json.loads(capsys.readouterr().out)["would_remove"] is None
    assert (tmp_path / "dst" / "data" / "f3.txt").exists()


def test_delete_removed_refuses_to_remove_more_than_max_remove_allows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A source emptied by mistake must not empty the destination behind it: a run that
    would remove more copies than --max-remove allows (by default 10% of the plan's) removes
    and copies nothing, exit 9, saying how many and how to go on if they are meant."""
    from tests.helpers import finished_local_copy

    plan, where = finished_local_copy(tmp_path, capsys)  # 29 copies
    gone = [f"f{n}.txt" for n in range(1, 5)]
    for name in gone:
        (tmp_path / "src" / "data" / name).unlink()
    (tmp_path / "src" / "data" / "new.txt").write_text("added since\n")
    run = ["run", plan, "--phase", "delta", "--delete-removed", "--force", "--reason", "t"]

    def copies() -> list[str]:
        return sorted(p.name for p in (tmp_path / "dst" / "data").glob("*.txt"))

    before = copies()
    assert main([*run, *where]) == 9
    out, err_text = capsys.readouterr()
    assert (
        "4 copied objects were deleted at the source (none removed: more than "
        "--max-remove allows)" in " ".join(out.split())
    ), out
    err = err_text.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(
        "migrate: error: --delete-removed: 4 copies would be removed (13.8% of the plan's 29)"
    )
    assert "--max-remove 4" in err[0]
    assert copies() == before  # nothing removed, nor copied (new.txt)
    assert main([*run, "--dry-run", "--json", *where]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["would_remove"] == 4 and "--max-remove 4" in report["removal_refused"]
    assert main([*run, "--max-remove", "3", *where]) == 9
    assert copies() == before
    capsys.readouterr()

    assert main([*run, "--max-remove", "4", "--json", *where]) == 0
    assert json.loads(capsys.readouterr().out)["delta"]["removed"] == 4
    assert main(["status", plan, *where]) == 0  # "done" fell by 4: the removed say why
    table = capsys.readouterr().out
    row = next(ln for ln in table.splitlines() if "bulk-1" in ln).split("│")
    assert "deleted" in table and "source" in table
    assert [c.strip() for c in row][2:8] == ["25", "0", "0", "0", "0", "4"]
    assert main(["run", plan, "--phase", "bulk-1", "--json", *where]) == 0  # nothing to do
    again = json.loads(capsys.readouterr().out)
    figures = (again["objects"], again["already_done"], again["deleted_at_source"])
    assert figures == (29, 25, 4), again
    assert main(["run", plan, "--phase", "bulk-1", *where]) == 0
    said = capsys.readouterr().out
    assert "25 objects were already copied and proven, 4 deleted at the source since" in said
    # The destination now holds what the source does (the pilot's object copied by delta).
    assert copies() == sorted(p.name for p in (tmp_path / "src" / "data").iterdir())


def test_max_remove_is_a_share_of_the_copies_made_not_of_every_transfer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """10% of the plan's copies: under 20 made (a dozen of its 29 objects failed as
    conflicts), 2 deleted at the source is more than 1 (a mutation review: 10% of every
    transfer, 29, let 2 go untested)."""
    from tests.helpers import finished_local_copy

    plan, where = finished_local_copy(tmp_path, capsys, run=False)
    data = tmp_path / "src" / "data"
    theirs = sorted(p.name for p in data.iterdir())[:12]
    (tmp_path / "dst" / "data").mkdir(parents=True, exist_ok=True)
    for name in theirs:  # another writer's objects under 9 of the plan's keys
        (tmp_path / "dst" / "data" / name).write_text("theirs\n")  # (one may be the pilot's)
    forced = ["--force", "--reason", "t"]
    assert main(["run", plan, "--phase", "bulk-1", *forced, *where]) == 11
    copied = [p.name for p in sorted(data.iterdir()) if p.name not in theirs][:2]
    for name in copied:
        (data / name).unlink()
    capsys.readouterr()
    code = main(["run", plan, "--phase", "delta", "--delete-removed", *forced, *where])
    err = capsys.readouterr().err
    assert code == 9 and "2 copies would be removed" in err, err
    assert "more than --max-remove 10% allows (1)" in err, err


def test_objects_changed_after_the_inventory_are_left_to_delta_and_hold_no_gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A live estate: every object is written to after the inventory (a log appended to).
    The pilot and bulk-1 leave them to delta, their verification passes saying so, so
    their gates open without --force, a run again says what is left and for whom, and
    delta copies them all (found by a black-box review: the pilot could never be
    verified, and every gate after it needed --force)."""
    from tests.helpers import finished_local_copy

    plan, where = finished_local_copy(tmp_path, capsys, run=False)
    for n in range(30):
        (tmp_path / "src" / "data" / f"f{n}.txt").write_text(f"object {n}, one more line\n")
    code, out = cli(capsys, "run", plan, "--phase", "pilot", "--json", *where)
    pilot = json.loads(out)["changed"]
    assert code == 0 and pilot > 0 and json.loads(out)["copied"] == 0, out
    code, out = cli(capsys, "verify", plan, "--phase", "pilot", "--json", *where)
    answer = json.loads(out)
    assert code == 0 and answer["passed"], out
    assert answer["counts"] == {"source_changed": pilot}
    assert all("delta or cutover copies it" in f["detail"] for f in answer["findings"])
    code, out = cli(capsys, "run", plan, "--phase", "pilot", *where)
    assert code == 0 and f"nothing to do: 0 objects copied and proven, {pilot} changed" in out
    assert "left for a delta or cutover run" in out
    code, out = cli(capsys, "run", plan, "--phase", "bulk-1", "--json", *where)  # no --force
    assert code == 0 and json.loads(out)["changed"] == 30 - pilot, out
    assert cli(capsys, "verify", plan, "--phase", "bulk-1", *where)[0] == 0
    code, out = cli(capsys, "run", plan, "--phase", "delta", "--json", *where)
    assert code == 0 and json.loads(out)["copied"] == 30, out
    assert (tmp_path / "dst" / "data" / "f7.txt").read_text() == "object 7, one more line\n"
    # The whole plan's verification holds changes not copied against the move: none left.
    assert cli(capsys, "verify", plan, *where)[0] == 0


def test_a_run_stopped_while_removing_records_the_removals_it_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in the middle of --delete-removed: the run's line in the history (and so the
    report) says how many copies it removed, not 0 (they are gone, each recorded)."""
    from migrate.plan import load_plan
    from providers.local import LocalAdapter
    from tests.helpers import finished_local_copy

    plan, where = finished_local_copy(tmp_path, capsys)
    for n in range(1, 5):
        (tmp_path / "src" / "data" / f"f{n}.txt").unlink()
    real, calls = LocalAdapter.delete, [0]

    def delete(self: LocalAdapter, container: str, key: str) -> None:
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt  # after two copies removed
        real(self, container, key)

    monkeypatch.setattr(LocalAdapter, "delete", delete)
    code = main(["run", plan, "--phase", "delta", "--delete-removed", "--max-remove", "4",
                 "--force", "--reason", "t", *where])  # fmt: skip
    monkeypatch.undo()
    capsys.readouterr()
    assert code == 130
    left = [n for n in range(1, 5) if (tmp_path / "dst" / "data" / f"f{n}.txt").exists()]
    assert len(left) == 2, left
    with Ledger(tmp_path / "state") as ledger:
        runs, _ = ledger.runs(load_plan(Path(plan)).name, 10)
    assert (runs[-1].outcome, runs[-1].counts.removed) == ("interrupted", 2)


def test_a_copy_gone_already_when_removal_comes_to_it_is_logged_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two objects deleted at the source, one's copy deleted at the destination by someone
    else first: the report's log of removals says the run removed one, and found the other
    gone already (an auditor reads who deleted what)."""
    from tests.helpers import finished_local_copy

    plan, where = finished_local_copy(tmp_path, capsys)
    for n in (1, 2):
        (tmp_path / "src" / "data" / f"f{n}.txt").unlink()
    (tmp_path / "dst" / "data" / "f2.txt").unlink()
    code = main(["run", plan, "--phase", "delta", "--delete-removed", "--force", "--reason",
                 "t", *where])  # fmt: skip
    said = capsys.readouterr().out
    assert code == 0, said
    assert not (tmp_path / "dst" / "data" / "f1.txt").exists()
    assert "1 removed at the destination (1 more found gone there)" in " ".join(said.split())
    assert main(["report", plan, "-o", str(tmp_path / "rep"), *where]) == 0
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    last = report["runs"]["runs"][-1]
    assert last["removed"] == 1, last
    log = report["removals"]
    assert (log["count"], log["already_gone"]) == (2, 1)
    assert sorted((x["source_key"], x["already_gone"]) for x in log["removals"]) == [
        ("f1.txt", False),
        ("f2.txt", True),
    ]
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "1 copies were removed" in page and "1 more, their source object deleted" in page
    assert page.count("(gone already)") == 1


@pytest.mark.parametrize(
    ("args", "said", "exit_code"),
    [(["--delete-removed", "--max-remove", "ten"], "neither a count of copies nor a percentage", 3),
     (["--delete-removed", "--max-remove", "150%"], "a share is from 0% to 100%", 3),
     (["--delete-removed", "--max-remove", "-1"], "a count of copies is 0 or more", 3),
     # an option that needs another one: a usage error, as --force without --reason
     (["--max-remove", "5"], "add --delete-removed", 2)],
)  # fmt: skip
def test_a_wrong_max_remove_is_refused_before_any_work(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    said: str,
    exit_code: int,
) -> None:
    from tests.helpers import finished_local_copy

    plan, where = finished_local_copy(tmp_path, capsys)
    (tmp_path / "src" / "data" / "f1.txt").unlink()
    code = main(["run", plan, "--phase", "delta", "--force", "--reason", "t", *args, *where])
    assert code == exit_code
    err = capsys.readouterr().err
    assert "--max-remove" in err and said in err, err
    assert (tmp_path / "dst" / "data" / "f1.txt").exists()


def test_a_share_whose_ceiling_is_a_whole_number_is_not_floored_one_below() -> None:
    """18.4% of 375 is 69: in floating point it floored to 68, and a removal of 69 copies
    was refused by the --max-remove that allows it (found by a review helper)."""
    from migrate.delta import removal_ceiling

    assert removal_ceiling("18.4%", 375) == 69
    assert removal_ceiling("10.2%", 1500) == 153
    assert removal_ceiling("32.3%", 1000) == 323
    assert removal_ceiling("10%", 29) == 2
    assert removal_ceiling("7", 29) == 7


def test_the_copies_a_removal_keeps_are_counted_all_and_named_up_to_a_bound(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why each copy was kept is named for the first SHOWN only (one line each held in
    memory: 2M kept copies were 2M lines, found by a review helper); the count covers all."""
    import migrate.delta
    from tests.helpers import finished_local_copy

    monkeypatch.setattr(migrate.delta, "SHOWN", 2)
    plan, where = finished_local_copy(tmp_path, capsys)
    src, dst = tmp_path / "src" / "data", tmp_path / "dst" / "data"
    for n in range(1, 5):  # rewritten by the application, then deleted at the source
        (dst / f"f{n}.txt").write_text(f"the application's own f{n}\n")
        (src / f"f{n}.txt").unlink()
    run = ["run", plan, "--phase", "delta", "--delete-removed", "--force", "--reason", "t"]
    assert main([*run, "--json", *where]) == 0
    delta = json.loads(capsys.readouterr().out)["delta"]
    assert (delta["removed"], delta["kept_count"], len(delta["kept_at_destination"])) == (0, 4, 2)
    assert all((dst / f"f{n}.txt").exists() for n in range(1, 5))


def test_copies_a_run_keeps_do_not_use_up_the_removal_ceiling(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A copy kept for good (another writer's object now under its key) stays `done` with
    its source gone: it counted against --max-remove in every later run, so a removal
    within the ceiling was refused (found by a review helper)."""
    from tests.helpers import finished_local_copy

    plan, where = finished_local_copy(tmp_path, capsys)
    src, dst = tmp_path / "src" / "data", tmp_path / "dst" / "data"
    run = ["run", plan, "--phase", "delta", "--delete-removed", "--force", "--reason", "t",
           "--json"]  # fmt: skip
    (dst / "f1.txt").write_text("the application's own f1\n")  # after the switch-over
    (src / "f1.txt").unlink()
    assert main([*run, *where]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["delta"]["removed"] == 0 and len(first["delta"]["kept_at_destination"]) == 1
    for name in ("f2.txt", "f3.txt", "f4.txt"):  # 3 of the 30 copies: 10%
        (src / name).unlink()
    code = main([*run, *where])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["delta"]["removed"] == 3
    assert (dst / "f1.txt").read_text() == "the application's own f1\n"


def test_a_container_kept_a_prefix_per_patient_is_one_dataset_and_its_new_prefixes_move(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A container with more top-level prefixes than the limit (one per patient, say) is
    inventoried, planned and reported as one dataset, not one a prefix; so it stays: a
    prefix that appears later is copied by delta as part of it. A container with few
    prefixes keeps one dataset a prefix."""
    monkeypatch.setattr("migrate.inventory.WHOLE_CONTAINER_AFTER", 5)
    src = tmp_path / "src"
    for n in range(8):
        for i in range(2):
            (src / "patients" / f"p{n:03d}").mkdir(parents=True, exist_ok=True)
            (src / "patients" / f"p{n:03d}" / f"scan-{i}.dcm").write_bytes(body(n * 10 + i, 300))
    (src / "patients" / "index.csv").write_bytes(body(99, 50))
    for name in ("a", "b"):
        (src / "studies" / name).mkdir(parents=True)
        (src / "studies" / name / "t.csv").write_bytes(body(len(name), 80))
    s = two_local_sites(tmp_path, ("patients", "studies"))
    code, out = cli(capsys, "inventory", "src", "--json", *s)
    assert code == 0
    datasets = {d["dataset"]: d for d in json.loads(out)["datasets"]}
    assert sorted(datasets) == ["patients/", "studies/a/", "studies/b/"]
    assert datasets["patients/"]["objects"] == 17 and datasets["patients/"]["whole_container"]
    assert not datasets["studies/a/"]["whole_container"]

    plan = str(tmp_path / "plans" / "p.yaml")
    made = cli(capsys, "plan", "--from", "src", "--to", "dst", "--policy", "eu-residency",
               "--no-pilot", "-o", plan, *s)  # fmt: skip
    assert made[0] == 0
    mapped = [m.dataset for m in load_plan(Path(plan)).mappings]
    assert mapped == ["patients/", "studies/a/", "studies/b/"]
    assert cli(capsys, "plan", "approve", plan, *s)[0] == 0
    assert cli(capsys, "run", plan, "--phase", "bulk-1", *s)[0] == 0
    assert cli(capsys, "verify", plan, "--phase", "bulk-1", *s)[0] == 0

    # Most patients' files leave (archived elsewhere), one patient is admitted: fewer
    # prefixes than the limit now, and still one dataset, the one the plan maps.
    for n in range(6):
        shutil.rmtree(src / "patients" / f"p{n:03d}")
    (src / "patients" / "p900").mkdir()
    (src / "patients" / "p900" / "scan-0.dcm").write_bytes(body(900, 200))
    code, out = cli(capsys, "run", plan, "--phase", "delta", "--json", *s)
    assert code == 0, out
    assert json.loads(out)["copied"] == 1
    copied = tmp_path / "dst" / load_plan(Path(plan)).mappings[0].destination_bucket
    assert (copied / "p900" / "scan-0.dcm").read_bytes() == body(900, 200)
    assert (copied / "p007" / "scan-1.dcm").read_bytes() == body(71, 300)
    assert cli(capsys, "verify", plan, "--phase", "delta", *s)[0] == 0


def test_a_dataset_left_out_on_purpose_is_on_the_record_and_does_not_hold_the_cutover(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`plan --exclude` leaves a dataset out (an archive no one reads, say): the plan, its
    review and its report say so; the move is verified and the cutover says switch over,
    where a dataset merely missing from the plan would hold it back."""
    src = tmp_path / "src" / "data"
    for name in ("keep", "old"):
        (src / name).mkdir(parents=True)
        for i in range(3):
            (src / name / f"{i}.txt").write_bytes(body(i + len(name), 100))
    s = two_local_sites(tmp_path)
    plan = str(tmp_path / "plans" / "p.yaml")
    assert cli(capsys, "inventory", "src", *s)[0] == 0
    code, out = cli(capsys, "plan", "--from", "src", "--to", "dst", "--policy", "eu-residency",
                    "--no-pilot", "--exclude", "data/old/", "-o", plan, *s)  # fmt: skip
    assert code == 0 and "Left out on purpose (--exclude), not moved: data/old/" in out, out
    assert cli(capsys, "plan", "approve", plan, *s)[0] == 0
    for phase in ("bulk-1", "delta"):
        assert cli(capsys, "run", plan, "--phase", phase, *s)[0] == 0
        assert cli(capsys, "verify", plan, "--phase", phase, *s)[0] == 0
    code, out = cli(capsys, "run", plan, "--phase", "cutover", *s)
    assert code == 0 and "Verification of the whole plan: passed" in out, out
    bucket = load_plan(Path(plan)).mappings[0].destination_bucket
    assert sorted(p.name for p in (tmp_path / "dst" / bucket).iterdir()) == ["keep"]

    assert cli(capsys, "report", plan, "-o", str(tmp_path / "report"), *s)[0] == 0
    rep = json.loads((tmp_path / "report" / "report.json").read_text())
    assert rep["status"] == "verified" and rep["outside_plan"] == []
    assert rep["excluded"] == [{"dataset": "data/old/", "objects": 3, "bytes": 300}]
    assert (
        "Source datasets the plan leaves out" in (tmp_path / "report" / "report.html").read_text()
    )

    # A dry run of the delta reads the latest inventory, and says so: the run lists again.
    (src / "keep" / "9.txt").write_bytes(b"new")
    code, out = cli(capsys, "run", plan, "--phase", "delta", "--dry-run", "--json", *s)
    dry = json.loads(out)
    assert code == 0 and dry["run_lists_again"] and dry["inventory_listed_at"]
    assert sum(d["would_copy"] for d in dry["datasets"]) == 0 and dry["outside_plan"] == []
    (src / "new").mkdir()
    (src / "new" / "a.txt").write_bytes(b"a")
    assert cli(capsys, "inventory", "src", *s)[0] == 0
    code, out = cli(capsys, "run", plan, "--phase", "delta", "--dry-run", *s)
    said = " ".join(out.split())
    assert code == 0, said
    assert "NOT IN THE PLAN: 1 dataset of the source that no phase copies: data/new/" in said
    assert "the run lists the source again first" in said and "migrate inventory src" in said
    # A listing under --prefix since: the dry run says which part is as it found it, and
    # when the rest was listed (not the partial listing's time alone).
    whole = json.loads(cli(capsys, "run", plan, "--phase", "delta", "--dry-run", "--json",
                           *s)[1])["inventory_listed_at"]  # fmt: skip
    assert cli(capsys, "inventory", "src", "--prefix", "keep/", *s)[0] == 0
    dry = json.loads(cli(capsys, "run", plan, "--phase", "delta", "--dry-run", "--json", *s)[1])
    assert dry["inventory_listed_at"] == whole
    assert [p.split(" at ")[0] for p in dry["inventory_prefixes_since"]] == ["keep/"]
    said = " ".join(cli(capsys, "run", plan, "--phase", "delta", "--dry-run", *s)[1].split())
    assert f"listed at {whole} (parts listed again since, under --prefix: keep/ at" in said
    # The delta's and cutover's projections leave out what changed in excluded datasets.
    with Ledger(tmp_path / "state") as ledger:
        everything = plan_inputs(ledger, "src").recent_objects
        assert plan_inputs(ledger, "src", exclude=["data/old/"]).recent_objects == everything - 3


def test_new_work_for_the_delta_voids_the_cutovers_verification(env_for: Any) -> None:
    """The cutover verified says the estate may switch over; an object that appears and
    is taken by delta after that makes it untrue, so the cutover is no longer verified."""
    env: Env = env_for("local", "local")
    with Ledger(env.state) as ledger:
        plan = bulk_copied(env, ledger)
        for phase in ("delta", "cutover"):
            prepare_delta(env.config, plan, ledger, env.source, phase=phase)
            run(env, ledger, plan, phase)
            assert check(env, ledger, plan, phase).passed
        assert ledger.phase_state(plan.name, "cutover").verified_at is not None
        put(env.source, env.container, "d/late.bin", body(120, 300))
        prepare_delta(env.config, plan, ledger, env.source, phase="delta")
        ledger.resolve_phase(plan, "delta")  # as its next run does first
        assert ledger.phase_state(plan.name, "delta").verified_at is None
        assert ledger.phase_state(plan.name, "cutover").verified_at is None
        # Copied and verified again, the cutover is verified again by its own check.
        run(env, ledger, plan, "delta")
        assert check(env, ledger, plan, "delta").passed
        prepare_delta(env.config, plan, ledger, env.source, phase="cutover")
        run(env, ledger, plan, "cutover")
        assert check(env, ledger, plan, "cutover").passed
        assert ledger.phase_state(plan.name, "cutover").verified_at is not None


def test_copies_removed_after_the_cutover_was_verified_void_its_verification(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The cutover verified, a delta --delete-removed then removes copies at the destination:
    what was verified is not what is there now, so neither the delta nor the cutover stays
    verified until checked again (they kept their marks: a walkthrough)."""
    from tests.helpers import finished_local_copy

    plan, where = finished_local_copy(tmp_path, capsys)
    forced = ["--force", "--reason", "t", *where]
    for args in (
        ["run", plan, "--phase", "delta", *forced],
        ["verify", plan, *where],
        ["run", plan, "--phase", "cutover", *forced],
        ["verify", plan, *where],
    ):
        assert main(args) == 0, capsys.readouterr().err
    capsys.readouterr()

    def verified() -> dict[str, bool]:
        assert main(["status", plan, "--json", *where]) == 0
        phases = json.loads(capsys.readouterr().out)["phases"]
        return {name: phases[name]["verified_at"] is not None for name in ("delta", "cutover")}

    assert verified() == {"delta": True, "cutover": True}
    (tmp_path / "src" / "data" / "f3.txt").unlink()
    assert main(["inventory", "src", *where]) == 0
    assert main(["run", plan, "--phase", "delta", "--delete-removed", *forced]) == 0
    capsys.readouterr()
    assert verified() == {"delta": False, "cutover": False}
    assert main(["verify", plan, *where]) == 0  # checked again: verified again
    capsys.readouterr()
    assert verified() == {"delta": True, "cutover": True}


def test_an_object_deleted_during_the_bulk_copy_does_not_hold_the_cutover(env_for: Any) -> None:
    """Deleted at the source while bulk-1 copied it (Azure answers the read's If-Match with
    412: recorded changed), then seen gone by the delta's re-list: the delta's run settles
    it, so bulk-1 no longer holds it and the cutover may pass without bulk-1 run again."""
    env: Env = env_for("s3", "s3")
    env.seed(ESTATE)
    plan = bulk_then_delta(env)
    gone = sorted(ESTATE)[2]

    class DeletedMidCopy(Delegating):
        def open_range(self, container: str, key: str, *args: Any, **kw: Any) -> Any:
            if key == gone:
                raise SourceChanged(f"src: {container}/{key}: the object changed (412)")
            return self._inner.open_range(container, key, *args, **kw)

    with Ledger(env.state) as ledger:
        summary = run_phase(plan, "bulk-1", ledger, DeletedMidCopy(env.source), env.destination,
                            config=SMALL_PARTS, sleep=lambda s: None)  # fmt: skip
        assert summary.changed == 1
        env.source.delete(env.container, gone)
        assert check(env, ledger, plan, "bulk-1").passed  # the change is the delta's
        prepare_delta(env.config, plan, ledger, env.source, phase="delta")
        run(env, ledger, plan, "delta")
        states = {c.state: c.objects for c in ledger.phase_counts(plan.name, "bulk-1")}
        assert "changed" not in states, states
        whole = check(env, ledger, plan, None)
    assert whole.passed, whole.findings

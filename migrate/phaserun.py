"""One phase of a plan, run as `migrate run` runs it: the gate, the re-list of delta and
cutover (and the removals they may make), the copy, and for cutover the verification of the
whole plan that says whether to switch over. The CLI prints what this returns; the demo
runs the same phases through it."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from migrate import os_user, tool_version
from migrate.errors import ConfigError, MigrateError, PlanError
from migrate.ledger import Ledger, RunCounts
from migrate.plan import Plan, check_inventory_held, check_sources_listed
from migrate.summary import PhaseSummary, Subscriber, finished_already

if TYPE_CHECKING:
    from migrate.delta import DeltaSummary
    from migrate.executor import TransferConfig
    from migrate.session import Session


class _RunLog:
    """The run's line in the state's history (`Ledger.run_started`): written when the run
    starts to work (a finished phase answered from the ledger writes none), ended with
    what came of it, or with what stopped it."""

    def __init__(self, ledger: Ledger, plan: str, phase: str, options: dict[str, object]) -> None:
        self.ledger, self.plan, self.phase, self.options = ledger, plan, phase, options
        self.id: int | None = None
        self.delta: DeltaSummary | None = None
        self.summary: PhaseSummary | None = None  # once the copy returned
        self.counted = _Counted(Subscriber())  # as it goes: what a stopped run did

    def counting(self, subscriber: Subscriber) -> Subscriber:
        """`subscriber`, the objects it is told of also counted for this record (and written
        to it every few seconds: a run killed outright shows what it had done)."""
        self.counted = _Counted(subscriber, self._progress)
        return self.counted

    def _progress(self) -> None:
        if self.id is not None:
            with suppress(MigrateError, sqlite3.Error):  # the copy's own records come first
                self.ledger.run_progress(self.id, self._counts(None))

    def start(self) -> None:
        if self.id is None:
            self.id = self.ledger.run_started(
                self.plan,
                self.phase,
                run_by=os_user(),
                tool_version=tool_version(),
                options=self.options,
            )

    def finished(self, outcome: PhaseRun) -> None:
        if self.id is None:
            return
        s = outcome.summary
        if s.failed or s.changed:
            word = "incomplete"
        elif not outcome.ready:
            word = "not ready to switch over"
        else:
            word = "completed"
        self.ledger.run_finished(self.id, word, self._counts(s))

    def stopped(self, exc: BaseException) -> None:
        if self.id is None:
            return
        if isinstance(exc, KeyboardInterrupt):
            word = "interrupted"
        elif isinstance(exc, MigrateError):
            word = f"stopped: {exc.one_line()}"
        else:
            word = f"stopped: unexpected {type(exc).__name__}"
        # The error that stopped the run is the one to show: not one of this record's.
        with suppress(MigrateError, sqlite3.Error):
            self.ledger.run_finished(self.id, word, self._counts(self.summary))

    def _counts(self, s: PhaseSummary | None) -> RunCounts:
        removed = self.delta.removed if self.delta else 0
        if s is None:  # stopped during the copy: what it was told of so far
            c = self.counted
            return RunCounts(c.copied, c.bytes, c.failed, c.conflicts, c.changed, removed)
        return RunCounts(
            copied=s.copied,
            bytes_copied=s.bytes_copied,
            failed=s.failed,
            conflicts=s.conflicts,
            changed=s.changed,
            removed=removed,
        )


PROGRESS_EVERY = 2.0  # seconds between writes of a run's counts while it copies


class _Counted(Subscriber):
    """Passes the copy's progress on, counting objects done, failed and changed, and
    bytes, as they come (threads call it at once)."""

    def __init__(self, inner: Subscriber, tick: Callable[[], None] | None = None) -> None:
        self.inner = inner
        self.copied = self.failed = self.changed = self.bytes = self.conflicts = 0
        self._lock = threading.Lock()
        self._tick, self._ticked = tick, time.monotonic()

    def on_start(self, objects: int, size: int) -> None:
        self.inner.on_start(objects, size)

    def on_bytes(self, n: int) -> None:
        with self._lock:
            self.bytes += n
        self.inner.on_bytes(n)

    def on_object(self, key: str, state: str) -> None:
        with self._lock:
            if state == "done":
                self.copied += 1
            elif state == "failed":
                self.failed += 1
            elif state == "changed":
                self.changed += 1
            due = self._tick is not None and time.monotonic() - self._ticked >= PROGRESS_EVERY
            if due:
                self._ticked = time.monotonic()
        if due and self._tick is not None:
            self._tick()
        self.inner.on_object(key, state)

    def on_conflicts(self, objects: int, *, found_before: bool) -> None:
        with self._lock:
            self.conflicts += objects
            if found_before:  # failed too, as the summary counts them
                self.failed += objects
        if found_before and self._tick is not None:
            self._tick()  # on the record at once: a kill -9 before any copy keeps them
        self.inner.on_conflicts(objects, found_before=found_before)

    def on_stopping(self) -> None:
        self.inner.on_stopping()


@dataclass
class PhaseRun:
    summary: PhaseSummary
    delta: DeltaSummary | None = None  # delta and cutover: what re-listing the source found
    # cutover: whether the verification of the whole plan passed (None: not run, the copy
    # failed), and whether the estate is ready to switch over
    whole: bool | None = None
    ready: bool = True
    checklist: list[str] = field(default_factory=list)


def check_removal_applies(plan: Plan, phase: str, delete_removed: bool) -> None:
    """--delete-removed on a phase that removes nothing: refused (exit 3), by a run and by
    its dry run alike (the dry run took it without a word, the run then refused it)."""
    kind = plan.phase(phase).kind
    if delete_removed and kind not in ("delta", "cutover"):
        # Taken without a word, it looked like a removal that had been done.
        raise ConfigError(
            f"--delete-removed: phase {phase} is a {kind} phase; only delta and cutover "
            "re-list the source and remove what was deleted there",
            hint=f"run `migrate run {plan.command_path} --phase {phase}` without it",
        )


def run_plan_phase(
    session: Session,
    phase: str,
    config: Callable[[], TransferConfig],
    *,
    delete_removed: bool = False,
    max_remove: str | None = None,
    force_reason: str | None = None,
    overwrite: bool = False,
    progress: Callable[[bool], AbstractContextManager[Subscriber]] | None = None,
    on_delta: Callable[[DeltaSummary], None] | None = None,
) -> PhaseRun:
    """Run `phase` of the session's plan. `config()` gives the copy's settings, asked only
    when there is something to copy (a finished phase loads no executor). `progress(quiet)`
    gives the subscriber the copy reports to (quiet: a finished phase, answered from the
    ledger); `on_delta` is told what the re-list found before anything is copied (or
    removed). `max_remove`: the most copies --delete-removed may remove (see
    migrate/delta.py; None: DEFAULT_MAX_REMOVE)."""
    plan, ledger = session.plan, session.ledger
    plan.phase(phase)  # an unknown phase is said first
    check_sources_listed(plan, session.config)
    check_inventory_held(plan, ledger, phase)
    check_removal_applies(plan, phase, delete_removed)
    if delete_removed:
        from migrate.delta import DEFAULT_MAX_REMOVE

        max_remove = max_remove or DEFAULT_MAX_REMOVE
    options: dict[str, object] = {
        "delete_removed": delete_removed,
        "forced_reason": force_reason,
        "max_remove": max_remove if delete_removed else None,
        "overwrite": overwrite,
    }
    log = _RunLog(ledger, plan.name, phase, options)
    try:
        outcome = _run(
            session, phase, config, log, delete_removed, max_remove, force_reason, overwrite,
            progress, on_delta,
        )  # fmt: skip
    except BaseException as exc:
        log.stopped(exc)
        raise
    log.finished(outcome)
    return outcome


def _run(
    session: Session,
    phase: str,
    config: Callable[[], TransferConfig],
    log: _RunLog,
    delete_removed: bool,
    max_remove: str | None,
    force_reason: str | None,
    overwrite: bool,
    progress: Callable[[bool], AbstractContextManager[Subscriber]] | None,
    on_delta: Callable[[DeltaSummary], None] | None,
) -> PhaseRun:
    plan, ledger = session.plan, session.ledger
    kind = plan.phase(phase).kind
    delta = None
    if kind in ("delta", "cutover"):
        from migrate.delta import SHOWN, check_removal_ceiling, prepare_delta, remove_deleted
        from migrate.executor import check_gates

        # The gate first: a refused phase neither re-lists the source (hours, on a large
        # estate) nor removes anything at the destination.
        log.start()  # refused at the gate too: a try is worth a line in the history
        check_gates(plan, phase, ledger, force_reason)
        # Both stores' adapters before the re-list (hours, on a large estate): a credential
        # unset, or a destination the policy blocks now, said before it, not after.
        _ = session.source, session.destination
        delta = log.delta = prepare_delta(session.config, plan, ledger, session.source, phase=phase)
        if delete_removed and delta.deleted:
            assert max_remove is not None  # the default set by run_plan_phase
            try:
                check_removal_ceiling(
                    plan,
                    ledger,
                    delta.deleted,
                    max_remove,
                    session.source,
                    session.destination,
                )
            except PlanError as refused:  # past --max-remove (a store's error is not that)
                delta.removal_refused = refused.one_line()
                if on_delta is not None:
                    on_delta(delta)  # what the re-list found: the copies it would remove
                raise
            except MigrateError:
                if on_delta is not None:
                    on_delta(delta)
                raise
            counted = delta

            def one_removed(_row: object) -> None:
                counted.removed += 1  # as it goes: a run stopped half-way records them

            def one_gone(_row: object) -> None:
                counted.already_gone += 1

            def one_kept(_row: object, exc: MigrateError) -> None:
                counted.kept_count += 1
                if len(counted.kept_at_destination) < SHOWN:
                    counted.kept_at_destination.append(exc.one_line())

            try:
                remove_deleted(
                    plan,
                    ledger,
                    session.source,
                    session.destination,
                    on_error=one_kept,
                    on_removed=one_removed,
                    on_gone=one_gone,
                )
            finally:
                if counted.removed:
                    ledger.removed_by(plan, phase)
        if on_delta is not None:
            on_delta(delta)
    # A finished phase is answered from the ledger, before any adapter is built.
    finished = finished_already(plan, phase, ledger)
    quiet = finished is not None
    with progress(quiet) if progress else nullcontext(Subscriber()) as subscriber:
        if finished is not None:
            summary = finished
        else:
            from migrate.executor import run_phase

            log.start()
            summary = log.summary = run_phase(
                plan,
                phase,
                ledger,
                session.source,
                session.destination,
                config=config(),
                subscriber=log.counting(subscriber),
                force_reason=force_reason,
                overwrite=overwrite,
            )
    outcome = PhaseRun(summary, delta, True, True, list(plan.phase(phase).checklist))
    if kind == "cutover":
        _verify_for_cutover(session, phase, outcome)
    return outcome


def _verify_for_cutover(session: Session, phase: str, outcome: PhaseRun) -> None:
    plan, ledger = session.plan, session.ledger
    if outcome.summary.failed:
        outcome.whole, outcome.ready = None, False
        ledger.clear_verified(plan.name, [phase])
        return
    from migrate.verify import verify

    result = verify(
        plan, ledger, session.source, session.destination,
        phase=None, deep=False, sample=None, seed=0,
    )  # fmt: skip
    # Datasets that appeared after the plan was made are not moved by it: the estate is not
    # ready to switch over, whatever the plan's own objects say.
    outcome.whole = result.passed
    outcome.ready = result.passed and not (outcome.delta and outcome.delta.unplanned)
    if outcome.ready:  # the whole plan verified: cutover too, even with nothing to copy
        ledger.phase_mark(plan.name, phase, "verified_at")
    else:  # "do not switch over": whatever an earlier cutover run recorded
        ledger.clear_verified(plan.name, [phase])

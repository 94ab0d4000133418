"""How long the phases still to run would take, at the rates this plan's own runs measured.

Why: a plan's durations are its bytes at --bandwidth alone, blind to the round trips each
object costs (8,538 small objects planned at 5 s took 51 s in a walkthrough). Once a run
has copied something (the pilot, first), its time says what an object costs here. The
model has two terms: the bytes at the plan's bandwidth, plus a cost per object, the time
the runs took beyond their bytes at that bandwidth, shared over their objects. Runs faster
than the bandwidth says (the link is faster than declared) price the bytes at their
measured rate instead, and objects at nothing more. Only finished pilot and bulk runs that
copied count: a killed run has no end to measure from, a delta's lists the source again.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from migrate.ledger import Ledger, PhaseCounts, RunRecord
from migrate.plan import PhaseKind, Plan

# The latest runs measured: the rates of today's link and stores, not of last month's.
RUNS_MEASURED = 100
# Objects a phase's next run takes: what its state has not done.
LEFT_STATES = ("pending", "in_progress", "failed", "changed")
LEFT_BY_COPY = ("pending", "in_progress", "failed")  # a pilot's or a wave's next run
_RELISTING = (PhaseKind.DELTA, PhaseKind.CUTOVER)


@dataclass(frozen=True, slots=True)
class Measured:
    """What the plan's finished runs did, and the rates the projection uses."""

    runs: int
    objects: int  # copied, failed or changed: each took its time
    bytes: int
    seconds: float
    bytes_per_second: float  # the plan's bandwidth, or the runs' rate if it was faster
    seconds_per_object: float  # beyond the bytes at bytes_per_second


@dataclass(frozen=True, slots=True)
class PhaseProjection:
    phase: str
    objects: int
    bytes: int
    seconds: float
    # "state": what the state holds still to copy; "plan": the plan's estimate (a phase
    # whose objects are chosen when it runs: never run, or a delta's changes).
    counted_from: str


@dataclass(frozen=True, slots=True)
class Projection:
    measured: Measured
    phases: tuple[PhaseProjection, ...]


def measure(plan: Plan, runs: Sequence[RunRecord]) -> Measured | None:
    """The rates of the plan's finished pilot and bulk runs that copied; None without one."""
    # A delta's or cutover's run lists the source again and may delete: its time is not
    # its copies'. A pilot's and a wave's is.
    copying = {p.name for p in plan.phases if p.kind in (PhaseKind.PILOT, PhaseKind.BULK)}
    used = [r for r in runs if r.finished_at and r.counts.copied > 0 and r.phase in copying]
    if not used:
        return None
    objects = sum(r.counts.copied + r.counts.failed + r.counts.changed for r in used)
    size = sum(r.counts.bytes_copied for r in used)
    # A run's times are to the second: one that took less counts as one.
    seconds = sum(max(1.0, _seconds(r.started_at, r.finished_at or "")) for r in used)
    bandwidth = plan.options.bandwidth_bytes_per_second
    at_bandwidth = size / bandwidth
    if seconds > at_bandwidth:
        rate, per_object = bandwidth, (seconds - at_bandwidth) / objects
    else:
        rate, per_object = size / seconds, 0.0
    return Measured(len(used), objects, size, seconds, rate, per_object)


def project(
    plan: Plan,
    runs: Sequence[RunRecord],
    counts: Sequence[PhaseCounts],
    resolved: Collection[str] | None = None,
) -> Projection | None:
    """Each phase with objects left to copy, timed at the runs' measured rates; None when
    no run has measured any (the plan's own durations are all there is). `resolved`: the
    phases run (their objects fixed), default those with counts: a phase run with none
    has nothing left, not its plan's estimate (a walkthrough)."""
    measured = measure(plan, runs)
    if measured is None:
        return None
    resolved = {c.phase for c in counts} | set(resolved or ())
    phases: list[PhaseProjection] = []
    for phase in plan.phases:
        if phase.kind is PhaseKind.DECOMMISSION:
            continue  # migrate copies nothing in it
        if phase.name in resolved:
            # A pilot's or a wave's objects changed at the source are the delta's to copy.
            states = LEFT_STATES if phase.kind in _RELISTING else LEFT_BY_COPY
            left = [c for c in counts if c.phase == phase.name and c.state in states]
            objects, size = sum(c.objects for c in left), sum(c.bytes for c in left)
            source = "state"
        else:
            objects, size, source = phase.estimate.objects, phase.estimate.bytes, "plan"
        if not objects:
            continue
        seconds = size / measured.bytes_per_second + objects * measured.seconds_per_object
        phases.append(PhaseProjection(phase.name, objects, size, round(seconds, 1), source))
    return Projection(measured, tuple(phases))


def projected(
    plan: Plan, ledger: Ledger, counts: Sequence[PhaseCounts] | None = None
) -> Projection | None:
    """`project` from the state: the plan's latest runs, and its phase counts unless the
    caller has read them already."""
    runs = ledger.runs(plan.name, RUNS_MEASURED)[0]
    resolved = [p.name for p in plan.phases if ledger.phase_state(plan.name, p.name).resolved_at]
    return project(
        plan, runs, ledger.phase_counts(plan.name) if counts is None else counts, resolved
    )


def _seconds(start: str, end: str) -> float:
    return max(0.0, (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())

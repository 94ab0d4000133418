"""What a phase run tells: progress callbacks while it runs, its summary after, and the
summary of a finished phase from the ledger alone. Kept apart from the executor so that a
finished phase run again (`migrate run`, nothing to do) loads none of the transfer
machinery."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from migrate.ledger import Ledger
    from migrate.plan import Plan


@dataclass
class PhaseSummary:
    plan: str
    phase: str
    objects: int = 0  # in the phase
    already_done: int = 0  # skipped: done by an earlier run
    # of `objects`: deleted at the source and no longer moved (their copy removed at the
    # destination, or left there unproven): neither done nor to do
    deleted_at_source: int = 0
    copied: int = 0
    bytes_copied: int = 0
    bytes_sent: int = 0
    failed: int = 0  # conflicts included
    conflicts: int = 0  # not copied: another object at the destination key (see conflicts.py)
    # --overwrite: objects this plan did not write that the run let its copies replace
    overwriting: int = 0
    # objects this plan did not write with the same bytes as the source's, replaced by their
    # copy (their content type and metadata now the source's): the report lists each
    same_bytes_replaced: int = 0
    changed: int = 0
    # changed at the source during an earlier run's copy: the delta's work, not this phase's
    left_changed: int = 0
    retries: int = 0
    throttled: int = 0  # answers that asked to slow down (429, 503 SlowDown, ServerBusy)
    # The lowest limit on requests in flight to one store: it starts at twice --concurrency
    # (an object's reads and writes, or its parts) and halves when the store throttles.
    # None: no copy ran (a phase with nothing to do): 0 read as throttled to nothing.
    lowest_requests_in_flight: int | None = None
    # The destination refused conditional writes: this run's writes went without a condition,
    # so an object put under a key after the conflict check could be overwritten.
    unguarded: bool = False
    # Buckets whose unfinished uploads could not be swept ("bucket: why"): uploads a killed
    # run began and never recorded may be left there, holding storage.
    unswept: list[str] = field(default_factory=list)
    seconds: float = 0.0
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # container, key, why

    @property
    def nothing_to_do(self) -> bool:
        return self.copied == 0 and self.failed == 0 and self.changed == 0


class Subscriber:
    """Progress callbacks; the executor itself never prints."""

    def on_start(self, objects: int, size: int) -> None: ...

    def on_bytes(self, n: int) -> None: ...

    def on_object(self, key: str, state: str) -> None: ...

    def on_conflicts(self, objects: int, *, found_before: bool) -> None:
        """Objects failed as conflicts at the destination: found before the copy (not said
        by on_object), or one found by its write (said as failed by on_object too)."""

    def on_stopping(self) -> None:
        """Interrupted (Ctrl-C, SIGTERM): the requests under way are being finished."""


def finished_already(plan: Plan, phase_name: str, ledger: Ledger) -> PhaseSummary | None:
    """The summary of a copy phase that finished and has nothing left to do, from the
    ledger alone: its re-run contacts no store (no adapter is even used). None when there
    is work, or when the phase re-lists its source (delta, cutover)."""
    phase = plan.phase(phase_name)
    if phase.kind.value in ("delta", "cutover"):
        return None
    state = ledger.phase_state(plan.name, phase_name)
    if state.resolved_at is None or state.finished_at is None:
        return None
    if ledger.transfers_to_do(plan.name, phase_name, None, 1):
        return None
    counts = {c.state: c.objects for c in ledger.phase_counts(plan.name, phase_name)}
    return PhaseSummary(
        plan.name,
        phase_name,
        objects=sum(counts.values()),
        already_done=counts.get("done", 0),
        deleted_at_source=counts.get("removed", 0),
        left_changed=counts.get("changed", 0),
    )

"""One process at a time runs or verifies a plan: an advisory lock file in the state
directory, taken without waiting and released by the kernel when the process ends (a crash
or kill -9 leaves no stale lock). Reading commands (status, report, plan show) take none."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from migrate.errors import ConfigError, PlanBusy

LOCK_DIR = "locks"


def lock_path(state_dir: Path, plan: str) -> Path:
    # A plan's name may hold any character: the file is named by its digest.
    return state_dir / LOCK_DIR / f"{hashlib.sha256(plan.encode()).hexdigest()[:24]}.lock"


@contextmanager
def plan_lock(state_dir: Path, plan: str, doing: str, *, plan_file: str = "PLAN") -> Iterator[None]:
    """Hold the plan's lock while the block runs; PlanBusy at once if another process
    holds it, naming what that process does. `doing`: e.g. "run --phase bulk-1";
    `plan_file`: the plan as the hint's command names it."""
    path = lock_path(state_dir, plan)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(
            f"state directory {state_dir}: the lock of plan {plan} cannot be made there "
            f"({exc.strerror})",
            hint="set state_dir in the sites file to a directory you can write to",
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "unknown"
            raise PlanBusy(
                f"plan {plan} is in use by another process ({holder})",
                hint=f"wait for it to end (`migrate status {plan_file}` shows its progress), then "
                "run this command again",
            ) from None
        since = datetime.now(UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}: {doing}, since {since}".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def holder(state_dir: Path, plan: str) -> str | None:
    """What the live process holding the plan's lock does ("pid 12: run --phase bulk-1,
    since ..."), or None. Read without taking the lock, so that a run starting meanwhile is
    never refused: the lock file holds its holder's line until released, and a killed
    holder's line stays behind, so its pid is checked alive."""
    try:
        line = lock_path(state_dir, plan).read_text("utf-8", "replace").strip()
    except OSError:
        return None
    pid = re.match(r"pid ([1-9]\d*):", line)  # never 0: kill(0) is the process group
    if pid is None:
        return None
    try:
        os.kill(int(pid[1]), 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return line

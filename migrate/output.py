"""Standard output whose reader may leave early (`migrate ... | head -1`): what it no longer
reads is dropped, and the command goes on to its own end and exit code (a run keeps
copying; a failure still says its line on stderr). Light: the entry point installs it
before the CLI loads."""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO, cast


def drop_stdout() -> None:
    """Point standard output (fd 1) at /dev/null: its reader is gone, and Python would
    otherwise fail again flushing it at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


class _ReaderMayLeave:
    def __init__(self, out: TextIO) -> None:
        self._out = out

    def write(self, text: str) -> int:
        try:
            return self._out.write(text)
        except BrokenPipeError:
            drop_stdout()
            return len(text)

    def flush(self) -> None:
        try:
            self._out.flush()
        except BrokenPipeError:
            drop_stdout()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._out, name)


def install() -> None:
    """Wrap the process's own standard output (not one a test put in its place)."""
    if sys.stdout is not None and sys.stdout is sys.__stdout__:
        sys.stdout = cast(TextIO, _ReaderMayLeave(cast(TextIO, sys.stdout)))

"""The `migrate` command. A finished copy phase run again is answered from its receipt
(migrate/rerun.py) before the CLI loads; every other command goes to the CLI."""

from __future__ import annotations

import signal
import sys
import threading


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    # A service manager's stop (SIGTERM) ends a command as Ctrl-C does: between parts, its
    # records and the hosts it contacted written, rather than cut off with nothing said.
    if threading.current_thread() is threading.main_thread():  # where handlers can be set
        signal.signal(signal.SIGTERM, _as_ctrl_c)
    # A reader gone from stdout (`| head`) drops the rest of the output, nothing more: for
    # every writer (the receipt's answer, rich, click's help), not an exit 1 or 120.
    from migrate.output import install

    install()
    # Ctrl-C while the CLI loads (half a second of imports) is an interruption like any.
    try:
        from migrate.rerun import answer

        code = answer(args)
        if code is not None:
            return code
        from migrate.cli import main as cli
    except KeyboardInterrupt:
        return _interrupted(args)
    return cli(args)


def _as_ctrl_c(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _interrupted(args: list[str]) -> int:
    from migrate.errors import (  # as the CLI says it
        INTERRUPTED,
        INTERRUPTED_HINT,
        INTERRUPTED_KIND,
        INTERRUPTED_LINE,
        INTERRUPTED_MESSAGE,
        error_json,
        wants_json,
    )

    print(INTERRUPTED_LINE, file=sys.stderr)
    if wants_json(args):
        print(error_json(INTERRUPTED, INTERRUPTED_KIND, INTERRUPTED_MESSAGE, INTERRUPTED_HINT))
    return INTERRUPTED

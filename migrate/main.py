"""The `migrate` command. A finished copy phase run again is answered from its receipt
(migrate/rerun.py) before the CLI loads; every other command goes to the CLI."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
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


def _interrupted(args: list[str]) -> int:
    from migrate.errors import (  # as the CLI says it
        INTERRUPTED,
        INTERRUPTED_KIND,
        INTERRUPTED_LINE,
        INTERRUPTED_MESSAGE,
        error_json,
        wants_json,
    )

    print(INTERRUPTED_LINE, file=sys.stderr)
    if wants_json(args):
        print(error_json(INTERRUPTED, INTERRUPTED_KIND, INTERRUPTED_MESSAGE))
    return INTERRUPTED

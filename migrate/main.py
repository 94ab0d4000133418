"""The `migrate` command. A finished copy phase run again is answered from its receipt
(migrate/rerun.py) before the CLI loads; every other command goes to the CLI."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    from migrate.rerun import answer

    try:
        code = answer(args)
    except KeyboardInterrupt:
        from migrate.errors import INTERRUPTED, INTERRUPTED_LINE  # as the CLI says it

        print(INTERRUPTED_LINE, file=sys.stderr)
        return INTERRUPTED
    if code is not None:
        return code
    from migrate.cli import main as cli

    return cli(args)

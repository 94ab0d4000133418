"""Where a command's files are: the sites file, the state directory it names, the ledger's
file in it. Standard library only: the re-run receipt (migrate/rerun.py) finds them before
any other library is loaded, by the same rules as every other command."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

DEFAULT_SITES_FILE = "sites.toml"
SITES_ENV = "MIGRATE_SITES"
DEFAULT_STATE_DIR = ".migrate"
STATE_FILE = "state.db"


def sites_path(explicit: Path | str | None) -> Path:
    """--sites, else $MIGRATE_SITES, else ./sites.toml."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(SITES_ENV)
    return Path(env) if env else Path(DEFAULT_SITES_FILE)


def state_dir_of(raw: dict[str, Any], sites_file: Path) -> Path:
    """The state directory a parsed sites file names, relative to the file as given."""
    return (sites_file.parent / str(raw.get("state_dir", DEFAULT_STATE_DIR))).resolve()

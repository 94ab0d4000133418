"""The local store's own behaviour beyond the conformance suite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from migrate.sites import Site
from providers.local import LocalAdapter


def test_a_prefix_listing_reads_only_the_entries_under_that_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A phase lists the destination once per dataset prefix: each listing looked at
    (a stat) every entry of the container's root, a million stats for a thousand datasets
    (a scale walkthrough: most of a verify's and of a run's start)."""
    for n in range(300):
        folder = tmp_path / "data" / f"d{n:03d}"
        folder.mkdir(parents=True)
        (folder / "a.txt").write_text(str(n))
    adapter = LocalAdapter(Site(name="here", provider="local", path=str(tmp_path)))
    looked = [0]
    real = Path.is_dir

    def is_dir(self: Path, *args: Any, **kw: Any) -> bool:
        looked[0] += 1
        return real(self, *args, **kw)

    monkeypatch.setattr(Path, "is_dir", is_dir)
    assert [o.key for o in adapter.list_objects("data", "d007/")] == ["d007/a.txt"]
    assert looked[0] < 10, looked  # the prefix's own entries, not the root's 300
    assert len(list(adapter.list_objects("data", ""))) == 300  # the whole listing still

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


def test_a_last_segment_leaves_room_for_its_attributes_file_and_a_folder_does_not_need_it(
    tmp_path: Path,
) -> None:
    """An object's attributes are kept in a file named after its last segment with '.json'
    added: a last segment of 251-255 bytes failed as a raw I/O error (a walkthrough). It is
    refused in one line, before any byte; a folder of 252 bytes is written and read; a file
    of such a name put there by other means is read, without attributes."""
    from migrate.errors import Unsupported
    from tests.helpers import put

    adapter = LocalAdapter(Site(name="here", provider="local", path=str(tmp_path)))
    adapter.create_container("data")
    with pytest.raises(Unsupported, match="last path segment over 250 bytes"):
        put(adapter, "data", "seg/" + "s" * 251, b"x")
    assert not (tmp_path / "data" / "seg").exists()  # nothing made for it
    folder = "f" * 252 + "/a.txt"
    put(adapter, "data", folder, b"in a long folder")
    assert adapter.head("data", folder).size == len(b"in a long folder")
    (tmp_path / "data" / ("n" * 253)).write_bytes(b"by hand")
    [listed] = [o for o in adapter.list_objects("data", "nnn") if o.size]
    stream = adapter.open_range("data", listed.key)
    try:
        assert stream.read() == b"by hand"
    finally:
        stream.close()
    adapter.delete("data", listed.key)  # no attributes' file to remove either
    assert not (tmp_path / "data" / ("n" * 253)).exists()

"""Azure multipart uploads held by one process (Azurite): what the adapter keeps of them."""

from __future__ import annotations

import hashlib
import io

import pytest

import providers.azure
from migrate.sites import Site
from providers.base import WriteAttrs
from providers.factory import build_adapter
from tests.conftest import unique_name


def test_uploads_left_unfinished_do_not_pile_up_their_attributes(
    azure_site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Azure sets a blob's headers when its blocks are committed, so the adapter keeps each
    upload's attributes for a completion given none. Uploads a run leaves unfinished (an
    outage, a conflict) were kept for the whole process; now the oldest beyond a bound go,
    and recent uploads still complete with the attributes they were created with."""
    monkeypatch.setattr(providers.azure, "_UPLOAD_ATTRS_KEPT", 2)
    adapter = build_adapter(azure_site)
    container = unique_name("up")
    adapter.create_container(container)
    uploads = [
        adapter.create_multipart(container, f"k{n}", WriteAttrs(content_type=f"text/x-{n}"))
        for n in range(3)
    ]
    assert len(adapter._upload_attrs) == 2  # type: ignore[attr-defined]
    data = b"the last upload's only part"
    part = adapter.upload_part(
        container, "k2", uploads[2], 1, io.BytesIO(data), len(data),
        {"md5": hashlib.md5(data).hexdigest()},
    )  # fmt: skip
    adapter.complete_multipart(container, "k2", uploads[2], [part])
    assert adapter.head(container, "k2").content_type == "text/x-2"
    assert len(adapter._upload_attrs) == 1  # type: ignore[attr-defined]

"""The lean Azure path's Shared Key signer signs exactly as azure-storage-blob's own policy
does, for the kinds of request that path sends (every lean request of the suite also goes
to an Azurite that checks signatures; this table reaches what a local server does not:
HTTPS hosts, real account names, keys and prefixes with characters URLs escape). And a
process that only lists and reads an Azure site never loads azure-storage-blob."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.rest import HttpRequest
from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy

from migrate.localservers import AZURITE_ACCOUNT, AZURITE_KEY
from migrate.sites import Site
from providers.azure import AzureAdapter
from providers.azure_lean import API_VERSION, SharedKeySigner
from tests.conftest import unique_name

DATE = "Mon, 23 Nov 2026 10:00:00 GMT"
KEY = quote("dir/é ü+~=&?.bin", safe="~/")
LIST = "restype=container&comp=list&include=metadata&maxresults=5000"
# An Azure marker's alphabet: base64 (with + / =), ! and -.
MARKER = "2!100!MDAwMDE3IXJlY29yZHMv+MDAvci0wMDAwMC5qc29u/ITAwMDAy!MzEyLTMx-=="
BASE = {"x-ms-version": API_VERSION, "x-ms-date": DATE}
CASES = [
    ("GET", "http://127.0.0.1:10000/devstoreaccount1/c/k", {**BASE, "x-ms-range": "bytes=0-15"}),
    (
        "GET",
        f"http://127.0.0.1:10000/devstoreaccount1/c/{KEY}",
        {**BASE, "x-ms-range": "bytes=16-", "If-Match": '"0x8DC0A1B2C3D4E5F"'},
    ),
    ("HEAD", f"http://127.0.0.1:10000/devstoreaccount1/c/{KEY}", {**BASE, "If-Match": '"0x8D"'}),
    ("GET", f"http://127.0.0.1:10000/devstoreaccount1/c?{LIST}", BASE),
    (
        "GET",
        f"https://hdh.blob.core.windows.net/c?{LIST}&prefix={quote('a b/é+%&=', safe='')}"
        f"&marker={quote(MARKER, safe='')}",
        BASE,
    ),
    ("GET", "https://hdh.blob.core.windows.net/c/k", {**BASE, "Content-Length": "0"}),
    ("GET", "https://hdh.blob.core.windows.net/c/k", {**BASE, "Content-Type": "text/csv"}),
]


@pytest.mark.parametrize(("method", "url", "headers"), CASES)
def test_signature_is_the_sdks(method: str, url: str, headers: dict[str, str]) -> None:
    account = url.split("//")[1].split(".")[0] if "core.windows" in url else AZURITE_ACCOUNT
    request = PipelineRequest(HttpRequest(method, url, headers=headers), PipelineContext(None))
    SharedKeyCredentialPolicy(account, AZURITE_KEY).on_request(request)
    ours = SharedKeySigner(account, AZURITE_KEY).authorization(method, url, headers)
    assert ours == request.http_request.headers["Authorization"]


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("https://hdh.blob.core.windows.net/c/k", {**BASE, "Range": "bytes=0-1"}),
        ("https://hdh.blob.core.windows.net/c/k", {**BASE, "x-ms-meta-a-b": "1"}),
        (f"https://hdh.blob.core.windows.net/c?{LIST}&prefix=a&prefix=b", BASE),
    ],
)
def test_signer_refuses_what_it_would_sign_unlike_the_sdk(
    url: str, headers: dict[str, str]
) -> None:
    """Where the SDK's string-to-sign would differ (its Range slot is always empty, its
    header order is not plain string order, it keeps one of repeated parameters)."""
    with pytest.raises(ValueError):
        SharedKeySigner("hdh", AZURITE_KEY).authorization("GET", url, headers)


def test_the_lean_api_version_is_one_the_sdk_knows() -> None:
    from azure.storage.blob import BlobServiceClient

    default = BlobServiceClient("https://hdh.blob.core.windows.net").api_version
    if default < API_VERSION:
        pytest.skip(f"azure-storage-blob speaks {default} at most: older than {API_VERSION}")
    # The SDK refuses a version it does not know (ValueError).
    client = BlobServiceClient("https://hdh.blob.core.windows.net", api_version=API_VERSION)
    assert client.api_version == API_VERSION


@pytest.mark.integration
def test_listing_and_reading_azure_does_not_load_the_sdk(azure_site: Site) -> None:
    """A copy from Azure lists and reads (an empty blob too, whose read proves its version
    with a HEAD): on the lean path, in a process of its own, with Azurite checking every
    signature, azure-storage-blob is never imported."""
    import hashlib
    import io

    from providers.base import WriteAttrs

    container = unique_name("lean")
    adapter = AzureAdapter(azure_site)
    try:
        adapter.create_container(container)
        for key in ("a.bin", "dir/é ü.bin", "empty"):
            data = b"" if key == "empty" else key.encode() * 100
            sums = {"md5": hashlib.md5(data).hexdigest()}
            adapter.put_object(container, key, io.BytesIO(data), len(data), WriteAttrs(), sums)
    finally:
        adapter.close()
    script = f"""
import json, sys
from migrate.sites import Site
from providers.azure import AzureAdapter
site = Site.model_validate_json({azure_site.model_dump_json()!r})
adapter = AzureAdapter(site)
objects = list(adapter.list_objects({container!r}))
listed = [o.key for o in objects]
got = adapter.open_range({container!r}, listed[1], 0, None).read(1 << 20)
empty = adapter.open_range({container!r}, "empty", 0, 0, if_match=objects[2].etag).read(1)
assert empty == b""
adapter.close()
print(json.dumps([listed, len(got), "azure.storage.blob" in sys.modules]))
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    listed, size, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert listed == ["a.bin", "dir/é ü.bin", "empty"]
    assert size == len("dir/é ü.bin".encode()) * 100
    assert loaded is False


@pytest.mark.integration
@pytest.mark.parametrize("path", ["lean", "sdk"])
def test_an_empty_range_proves_the_version(
    path: str, azure_site: Site, azure_sdk_site: Site
) -> None:
    """An empty blob is read as an empty range: rewritten since it was listed, the read
    says so (SourceChanged) instead of copying nothing as the listed version."""
    import hashlib
    import io

    from migrate.errors import SourceChanged
    from providers.base import WriteAttrs

    container = unique_name("empty")
    adapter = AzureAdapter(azure_site if path == "lean" else azure_sdk_site)

    def put(data: bytes) -> str:
        sums = {"md5": hashlib.md5(data).hexdigest()}
        result = adapter.put_object(container, "e", io.BytesIO(data), len(data), WriteAttrs(), sums)
        assert result.etag
        return result.etag

    try:
        adapter.create_container(container)
        listed = put(b"")
        assert adapter.open_range(container, "e", 0, 0, if_match=listed).read(1) == b""
        put(b"now longer")
        with pytest.raises(SourceChanged):
            adapter.open_range(container, "e", 0, 0, if_match=listed)
    finally:
        adapter.close()

"""The lean path's SigV4 signer signs exactly as botocore's S3 signer does, for the kinds of
request that path sends. (Every lean request of the suite also goes to a SeaweedFS that
checks signatures; this table reaches what a local server does not: session tokens, HTTPS
and IPv6 hosts, a change of day.)"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from providers.sigv4 import S3Signer

BODY = b"sixteen KiB, or so" * 3
KEY = quote("dir/é ü+~=&?.bin", safe="/~")
CASES = [
    ("GET", f"http://127.0.0.1:8333/bucket/{KEY}", {"Range": "bytes=0-15"}, b""),
    (
        "PUT",
        f"http://127.0.0.1:8333/bucket/{KEY}",
        {
            "Content-Type": "text/csv",
            "Cache-Control": "no-cache",
            "Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg==",
            "x-amz-checksum-sha256": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hXuFU=",
            "x-amz-meta-note": "  two   spaces  inside ",
            "User-Agent": "not signed",
            "Expect": "100-continue",
        },
        BODY,
    ),
    (
        "PUT",
        "http://127.0.0.1:8333/bucket/big.bin?partNumber=3&uploadId=abc%2Fdef%3D%3D",
        {"Content-Length": str(len(BODY))},
        BODY,
    ),
    (
        "GET",
        "http://127.0.0.1:8333/bucket?list-type=2&prefix=a%20b%2F&max-keys=1000"
        "&continuation-token=xyz%3D&start-after=a%2Fz",
        {},
        b"",
    ),
    ("GET", "https://s3.fr-par.scw.cloud/bucket/key", {"Range": "bytes=5-9"}, b""),
    ("PUT", "https://S3.Example.ORG:9443/bucket/key", {"Content-Type": "a/b"}, BODY),
    ("GET", "http://[::1]:9000/bucket/key", {}, b""),
    ("GET", "http://localhost:80/bucket/key", {}, b""),
    # Metadata names from a case-sensitive source: two lines, one signed header.
    ("PUT", "http://127.0.0.1:8333/bucket/k", {"x-amz-meta-A": "1", "x-amz-meta-a": " 2"}, BODY),
    ("PUT", "http://127.0.0.1:8333/bucket/k", {"Content-Type": "a/b"}, memoryview(BODY)),
]


def _botocore(
    credentials: Credentials, region: str, method: str, url: str, headers: dict[str, str],
    body: bytes | memoryview, when: datetime, monkeypatch: pytest.MonkeyPatch,
) -> list[tuple[str, str]]:  # fmt: skip
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: when)
    request = AWSRequest(method, url, data=bytes(body), headers=dict(headers))
    S3SigV4Auth(credentials, "s3", region).add_auth(request)
    return list(request.headers.items())  # every line, as sent


@pytest.mark.parametrize("token", [None, "session/token+=="])
def test_the_lean_signer_signs_every_kind_of_lean_request_as_botocore_does(
    token: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    signer = S3Signer(credentials, "fr-par")  # one signer across days: its key cache too
    for when in (datetime(2026, 12, 1, 23, 59, 59), datetime(2026, 12, 2, 0, 0, 1)):
        stamp = when.strftime("%Y%m%dT%H%M%SZ")
        for method, url, headers, body in CASES:
            want = _botocore(credentials, "fr-par", method, url, headers, body, when, monkeypatch)
            for known in (None, hashlib.sha256(body).hexdigest()):
                got = signer.sign(method, url, headers, body, payload_sha256=known, amz_date=stamp)
                assert list(got.items()) == want, (method, url, known)


def test_requests_are_dated_in_utc_whatever_the_local_time_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        got = S3Signer(Credentials("AKID", "secret"), "fr-par").sign(
            "GET", "http://127.0.0.1:8333/bucket/key", {}
        )
    finally:
        monkeypatch.undo()
        time.tzset()
    sent = datetime.strptime(got["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - sent).total_seconds()) < 60


def test_a_wrong_payload_hash_gives_another_signature() -> None:
    # The signature covers the body's hash: the store refuses a body that is not the one
    # signed. (This is what makes the known hash a shortcut and not a blind spot.)
    signer = S3Signer(Credentials("AKID", "secret"), "fr-par")
    url = "http://127.0.0.1:8333/bucket/key"
    right = signer.sign("PUT", url, {}, BODY, amz_date="20261201T120000Z")
    wrong = signer.sign("PUT", url, {}, BODY, payload_sha256="0" * 64, amz_date="20261201T120000Z")
    assert right["Authorization"] != wrong["Authorization"]

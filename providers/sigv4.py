"""AWS Signature Version 4 for the lean S3 path (providers/s3_lean.py): the signature
botocore's S3 signer (`botocore.auth.S3SigV4Auth`) makes for the same request, on plain
dicts.

Why not botocore's signer: it works on botocore's request and header objects (an
`email.message` per request), which cost ~0.14 ms of CPU per request; for 16 KiB objects,
two requests each, that was about a tenth of the client's CPU. This is the same algorithm
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html)
for the requests that path makes: path-style S3 URLs whose path and query are already
encoded. tests/providers/test_sigv4.py checks that both signers give the same header lines
for a table of such requests, and every lean request in the suite goes to a SeaweedFS that
checks signatures.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

from botocore.auth import SIGNED_HEADERS_BLACKLIST
from botocore.credentials import Credentials

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# Never signed: hops and proxies may change them (botocore's own list).
_UNSIGNED = frozenset(SIGNED_HEADERS_BLACKLIST)
# Set by the signer: any the caller gave would be replaced.
_OWN = frozenset({"authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def host_header(url: str) -> str:
    """The Host value the request carries: lowercase, without userinfo or a default port."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


class S3Signer:
    """Signs S3 requests for one set of credentials and one region."""

    def __init__(self, credentials: Credentials, region: str) -> None:
        self._credentials = credentials
        self._region = region
        self._key: tuple[str, str, bytes] = ("", "", b"")  # (day, secret, signing key)

    def _signing_key(self, day: str, secret: str) -> bytes:
        cached_day, cached_secret, key = self._key
        if cached_day != day or cached_secret != secret:
            key = _hmac(f"AWS4{secret}".encode(), day)
            for part in (self._region, "s3", "aws4_request"):
                key = _hmac(key, part)
            self._key = (day, secret, key)  # one assignment: safe across threads
        return key

    def sign(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | memoryview = b"",
        *,
        payload_sha256: str | None = None,
        amz_date: str | None = None,
    ) -> dict[str, str]:
        """The headers to send: the caller's, with X-Amz-Date, X-Amz-Content-SHA256,
        X-Amz-Security-Token (with a session token) and Authorization. `payload_sha256` is
        the body's SHA-256 (hex) when the caller has it; `amz_date` is for tests.
        The caller gives no `Date` and none of the headers the signer sets (botocore
        would handle those differently; the lean path never sends them)."""
        creds = self._credentials.get_frozen_credentials()
        stamp = amz_date or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        if not payload_sha256:
            payload_sha256 = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        out = {k: v for k, v in headers.items() if k.lower() not in _OWN}
        out["X-Amz-Date"] = stamp
        if creds.token:
            out["X-Amz-Security-Token"] = creds.token
        out["X-Amz-Content-SHA256"] = payload_sha256
        # Names that differ only in case go out as separate lines, which the store reads
        # as one header of comma-joined values: that is what is signed.
        signed: dict[str, list[str]] = {}
        for name, value in out.items():
            signed.setdefault(name.lower(), []).append(" ".join(value.split()))
        for name in _UNSIGNED.intersection(signed):
            del signed[name]
        signed.setdefault("host", [host_header(url)])
        names = sorted(signed)
        parts = urlsplit(url)
        query = "&".join(
            f"{k}={v}" for k, v in sorted(p.partition("=")[::2] for p in parts.query.split("&"))
        ) if parts.query else ""  # fmt: skip
        canonical = "\n".join(
            (
                method.upper(),
                parts.path,  # S3: the path as encoded, not normalised
                query,
                "".join(f"{n}:{','.join(signed[n])}\n" for n in names),
                ";".join(names),
                payload_sha256,
            )
        )
        day = stamp[:8]
        scope = f"{day}/{self._region}/s3/aws4_request"
        to_sign = "\n".join(
            ("AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest())
        )
        signature = hmac.new(
            self._signing_key(day, creds.secret_key or ""), to_sign.encode(), hashlib.sha256
        ).hexdigest()
        out["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature}"
        )
        return out

"""Google Cloud Storage as a source, through its XML API (S3-interoperable) with HMAC keys.

The S3 adapter (providers/s3.py) does the work; this one changes what GCS does otherwise
(sources: ../shared/providers-facts.md §10, and those in the README's GCS entry):

- Hashes come in `x-goog-hash` (`crc32c=…,md5=…`, base64). The ETag is the MD5 only for an
  object written whole; a composed or multipart-uploaded object has no MD5 and an ETag
  that may look like one. On an answer from GCS (it bears x-goog-* headers), the MD5 is
  taken from `x-goog-hash` alone; the executor proves the bytes by the MD5 the read's
  answer gives, and records `none` where it says there is none (an answer without any
  x-goog-* header, from a stand-in store, is read as S3's).
- An object stored gzip-compressed (`Content-Encoding: gzip`) is served decompressed to a
  client that does not accept gzip: other bytes than those stored, no Content-Length, and a
  Range ignored. The object's HEAD and GET ask for the stored bytes (`Accept-Encoding:
  gzip`), added after signing: Google's front end rewrites that header, so a signed one
  breaks the signature.
- If-Match on a GET is not among GCS's documented headers: the answer's ETag must be the
  one asked for, or the read is SourceChanged.
- A HEAD sends no `x-amz-checksum-mode`: GCS has no x-amz-checksum-* to give.
- User metadata may come as `x-goog-meta-*`: read beside `x-amz-meta-*`.
- Objects have no tags: there are none to read (no `?tagging` request is sent).
- Replication (a bucket's location) and versioning, retention and holds are not read
  through S3's calls, which GCS does not document: the plan says they are unknown.
- A regional endpoint (`storage.LOCATION.rep.googleapis.com`) must name the site's region.
- NEARLINE, COLDLINE and ARCHIVE are not archives in S3's sense: read at once, no restore.
- No lean path: it speaks S3 as the S3 stores do, and none of the above.

Not checked against Google itself (no local GCS speaks the XML API): the tests run this
adapter against SeaweedFS, and its GCS-only answers against a local server that gives them.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from migrate.errors import ConfigError, Permanent, RouteRefused, SourceChanged, Unsupported
from migrate.routing import host_of, is_global_endpoint, with_scheme
from migrate.sites import Site
from providers.base import (
    ObjectInfo,
    Protection,
    ReadStream,
    Replication,
    RequestGuard,
    StoreLimits,
)
from providers.s3 import S3Adapter

# The stored bytes, never a decompressed copy (see the module doc).
ACCEPT_STORED = "gzip"
_META = "x-goog-meta-"


def goog_hashes(header: str | None) -> dict[str, str]:
    """`x-goog-hash: crc32c=n8HMLg==,md5=XrY7u+Ae7tCTyyK7j1rNww==` as hex digests. A value
    that is not base64 of the right length is dropped rather than trusted."""
    found: dict[str, str] = {}
    lengths = {"md5": 16, "crc32c": 4}
    for part in (header or "").split(","):
        name, _, value = part.strip().partition("=")
        name = name.lower()
        if name not in lengths:
            continue
        try:
            raw = base64.b64decode(value.strip(), validate=True)
        except ValueError:
            continue
        if len(raw) == lengths[name]:
            found[name] = raw.hex()
    return found


def _headers(r: Mapping[str, Any]) -> Mapping[str, str]:
    headers: Mapping[str, str] = r.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    return headers


def _accept_stored(request: Any, **_: Any) -> None:
    # Registered on before-send, after the guard's hook and after signing: the header is
    # sent as is and unsigned. Only on the object's HEAD and GET (their bytes and size are
    # the stored ones); a listing's XML is read as it comes (botocore decompresses nothing).
    request.headers["Accept-Encoding"] = ACCEPT_STORED


# `storage.LOCATION.rep.googleapis.com`: Google's regional endpoint, serving that location
# only (https://cloud.google.com/storage/docs/regional-endpoints).
_REGIONAL = re.compile(r"^storage\.([a-z0-9-]+)\.rep\.googleapis\.com$")


def _etag(value: str) -> str:
    return value.strip().removeprefix("W/").strip('"').lower()


def check_regional_endpoint(site: Site) -> None:
    """A regional endpoint names its location: it must be the site's declared region, which
    the plan judges. ConfigError otherwise (a region in Europe declared, requests sent to
    an endpoint in the US)."""
    if not site.endpoint:
        return
    host = host_of(with_scheme(site.endpoint))[1]  # as the guard reads it: no trailing dot
    regional = f"https://storage.{(site.region or '').lower()}.rep.googleapis.com"
    if is_global_endpoint(host):
        # The guard refuses its requests all the same; said here with the site and the fix.
        raise RouteRefused(
            f"site {site.name}: endpoint {host} is GCS's global endpoint, which does not "
            "keep requests in one location: refused",
            hint=f'set endpoint = "{regional}" in the site, the regional endpoint of its region'
            if site.region
            else "declare the site's `region` (its GCS location) and set endpoint = "
            '"https://storage.LOCATION.rep.googleapis.com" for it',
        )
    match = _REGIONAL.match(host)
    if match is None:
        return
    if (site.region or "").lower() != match[1]:
        raise ConfigError(
            f"site {site.name}: endpoint {host} serves GCS location {match[1]}, but the site "
            f"declares region {site.region or '(none)'}: the plan would judge one place and "
            "every request go to another",
            hint=f'set endpoint = "{regional}" for the region declared, or declare region = '
            f'"{match[1]}" (a location your catalog file lists)'
            if site.region
            else f'declare region = "{match[1]}" (a location your catalog file lists)',
        )


class GcsAdapter(S3Adapter):
    """The StoreAdapter over GCS's XML API (see the module doc)."""

    def __init__(
        self,
        site: Site,
        *,
        guard: RequestGuard | None = None,
        confirmed_checksums: Sequence[str] = (),
        limits: StoreLimits | None = None,
    ) -> None:
        check_regional_endpoint(site)
        super().__init__(site, guard=guard, confirmed_checksums=confirmed_checksums, limits=limits)
        if self._lean is not None:
            self._lean.close()
            self._lean = None
        for operation in ("GetObject", "HeadObject"):
            self._client.meta.events.register(f"before-send.s3.{operation}", _accept_stored)
        self.capabilities = replace(
            self.capabilities,
            native_checksums=("md5", "crc32c"),
            object_tags=False,
            reads_protection=False,
        )

    def head(self, container: str, key: str) -> ObjectInfo:
        # No x-amz-checksum-mode: GCS has no x-amz-checksum-* to give.
        r = self._call(self._client.head_object, container, key, Bucket=container, Key=key)
        return self._described(container, key, r, int(r.get("ContentLength", 0)))

    def open_range(
        self,
        container: str,
        key: str,
        start: int = 0,
        end: int | None = None,
        *,
        if_match: str | None = None,
        version_id: str | None = None,
    ) -> ReadStream:
        stream = super().open_range(
            container, key, start, end, if_match=if_match, version_id=version_id
        )
        # If-Match on a GET is not in GCS's documented headers (x-goog-if-generation-match
        # is): the answer's ETag, which changes whenever the object does, must be the one
        # asked for, or parts of two objects could be joined (one without an MD5 to tell).
        if not if_match or stream.info is None:  # None: no request (an empty range)
            return stream
        got = stream.info.etag
        if got is None:
            stream.close()
            raise Permanent(
                f"{self._where(container, key)}: the store answered a read without an ETag: "
                "it cannot be held to the object asked for"
            )
        if _etag(got) != _etag(if_match):
            stream.close()
            raise SourceChanged(
                f"{self._where(container, key)}: the object changed (ETag {_etag(got)}, "
                f"expected {_etag(if_match)})"
            )
        return stream

    def _info(self, container: str, item: Mapping[str, Any]) -> ObjectInfo:
        # A listing cannot say which ETag is an MD5 (a composed object's looks like one):
        # none is recorded as the object's MD5; the read's x-goog-hash gives it.
        info = super()._info(container, item)
        return replace(info, checksums={k: v for k, v in info.checksums.items() if k != "md5"})

    def check_account(self) -> str:
        # GCS lists buckets per project, and a request signed with an HMAC key names none
        # (x-amz-project-id): a refusal of that listing says nothing of the credentials.
        try:
            return super().check_account()
        except (Permanent, Unsupported) as exc:
            return (
                f"credentials not confirmed: GCS did not list the project's buckets "
                f"({exc.message}); declare the site's buckets and `sites check` tries each"
            )

    def read_tags(
        self, container: str, key: str, *, version_id: str | None = None
    ) -> dict[str, str]:
        # GCS objects have no tags (no ?tagging in its XML API): none to read or compare.
        return {}

    def replication(self, container: str) -> Replication:
        self._call(self._client.head_bucket, container, None, Bucket=container)  # NotFound
        # No GetBucketReplication in GCS's XML API; where a bucket's data is kept is its
        # location (a region, a dual- or multi-region), which no request here reads.
        return Replication(
            known=False,
            detail=f"{self._where(container, None)}: GCS keeps a bucket's data where its "
            "location says (a dual- or multi-region spans several); migrate does not read it: "
            "check the bucket's location in the Google Cloud console",
        )

    def protection(self, container: str) -> Protection:
        self._call(self._client.head_bucket, container, None, Bucket=container)  # NotFound
        # Versioning, retention and holds exist on GCS, not as S3's calls answer them
        # (object versions are generations): unknown rather than a guess.
        return Protection(
            versioning=None,
            older_versions=None,
            counted_all=False,
            object_lock=None,
            legal_hold=None,
            detail=f"{self._where(container, None)}: object versioning (generations), "
            "retention policies and holds are not read on GCS: check them in the Google "
            "Cloud console; only the live object of each name is copied",
        )

    def _described(self, container: str, key: str, r: Mapping[str, Any], size: int) -> ObjectInfo:
        info = super()._described(container, key, r, size)
        headers = _headers(r)
        checksums = dict(info.checksums)
        if any(name.lower().startswith("x-goog-") for name in headers):
            # GCS's answer: an MD5 only where x-goog-hash gives one. A composed object's
            # ETag looks like one and is not.
            checksums.pop("md5", None)
            checksums.update(goog_hashes(headers.get("x-goog-hash")))
        metadata = dict(info.metadata or {})
        for name, value in headers.items():
            if name.lower().startswith(_META):
                metadata.setdefault(name[len(_META) :].lower(), value)
        stored = headers.get("x-goog-storage-class")
        return replace(
            info, checksums=checksums, metadata=metadata, storage_class=stored or info.storage_class
        )

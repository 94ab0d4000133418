"""The source's own whole-object checksums beyond MD5, checked against the bytes read.

Stores state checksums of what they hold. The MD5 (Azure's Content-MD5, a single-part S3
ETag, GCS's md5) is compared in migrate/transfer.py. Others cover objects that have no MD5:
S3's full-object CRC64NVME (AWS's default for objects written since 2025, multipart ones
included), CRC32 or CRC32C, and the SHA-256 or SHA-1 of a single-part object; GCS's CRC32C
(a composed object has no MD5). One of them, the cheapest to compute, is computed over the
bytes read in order and compared before the object is written or its upload completed:
bytes the source's own checksum disputes never become visible at the destination.

A COMPOSITE checksum (S3's `-N`: a checksum of its parts' checksums) needs the source's
own part boundaries and is not used.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

from migrate.errors import ChecksumMismatch

# Cheapest first: the SHA-256 the copy computes anyway, then CRCs (several GB/s here), then
# SHA-1 (a second hash of every byte).
_CRC_MODELS = {"crc64nvme": "CRC64-NVME", "crc32c": "CRC32-ISCSI", "crc32": "CRC32-ISO-HDLC"}
_HEX_LENGTH = {"sha256": 64, "crc64nvme": 16, "crc32c": 8, "crc32": 8, "sha1": 40}
ALGORITHMS = tuple(_HEX_LENGTH)
_NAMES = {
    "sha256": "SHA-256",
    "crc64nvme": "CRC64NVME",
    "crc32c": "CRC32C",
    "crc32": "CRC32",
    "sha1": "SHA-1",
}
_HEX = re.compile(r"[0-9a-f]+")


class SourceSum:
    """One whole-object checksum the source states, computed over the bytes given to
    `update` in order; `check` compares. The SHA-256 is the one the copy computes itself."""

    def __init__(self, algorithm: str, stated: str) -> None:
        self.algorithm = algorithm
        self.stated = stated
        self._crc = None
        if algorithm in _CRC_MODELS:
            import anycrc  # here: most copies need none, and every command imports this

            self._crc = anycrc.Model(_CRC_MODELS[algorithm])
        self._value: int | None = None
        self._sha1 = hashlib.sha1() if algorithm == "sha1" else None

    @classmethod
    def stated_in(cls, checksums: Mapping[str, str]) -> SourceSum | None:
        """The first whole-object checksum among `checksums` (hex digests by algorithm, as
        adapters give them) this module can compute; None if there is none."""
        for algorithm in ALGORITHMS:
            value = (checksums.get(algorithm) or "").lower()
            if len(value) == _HEX_LENGTH[algorithm] and _HEX.fullmatch(value):
                return cls(algorithm, value)
        return None

    def update(self, data: bytes | memoryview) -> None:
        if self._crc is not None:
            self._value = int(
                self._crc.calc(data) if self._value is None else self._crc.calc(data, self._value)
            )
        elif self._sha1 is not None:
            self._sha1.update(data)

    def check(self, where: str, sha256: str) -> str:
        """The proof's name (the algorithm) when the bytes given have the stated checksum;
        ChecksumMismatch otherwise. `sha256`: the whole object's, as the copy computed it."""
        if self._crc is not None:
            value = self._crc.calc(b"") if self._value is None else self._value
            computed = f"{int(value):0{_HEX_LENGTH[self.algorithm]}x}"
        elif self._sha1 is not None:
            computed = self._sha1.hexdigest()
        else:
            computed = sha256
        if computed != self.stated:
            raise ChecksumMismatch(
                f"{where}: bytes read do not match the source's own "
                f"{_NAMES[self.algorithm]} checksum"
            )
        return self.algorithm

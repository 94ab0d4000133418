"""The source's own whole-object checksums beyond MD5 (migrate/sourcesum.py): each is
computed as its store computes it, over bytes given in any slicing."""

from __future__ import annotations

import hashlib

import pytest

from migrate.errors import ChecksumMismatch
from migrate.sourcesum import SourceSum

DATA = b"123456789"  # the CRC catalogue's check input
STATED = {
    # Check values of the CRC catalogue (reveng): CRC-64/NVME, CRC-32/ISCSI, CRC-32/ISO-HDLC.
    "crc64nvme": "ae8b14860a799888",
    "crc32c": "e3069283",
    "crc32": "cbf43926",
    "sha1": hashlib.sha1(DATA).hexdigest(),
    "sha256": hashlib.sha256(DATA).hexdigest(),
}


@pytest.mark.parametrize("algorithm", sorted(STATED))
def test_a_stated_checksum_holds_for_its_bytes_and_fails_for_others(algorithm: str) -> None:
    for data, holds in ((DATA, True), (b"123456788", False)):
        found = SourceSum.stated_in({algorithm: STATED[algorithm].upper()})
        assert found is not None and found.algorithm == algorithm
        for chunk in (data[:4], data[4:5], b"", data[5:]):
            found.update(memoryview(chunk))
        sha256 = hashlib.sha256(data).hexdigest()
        if holds:
            assert found.check("c/k", sha256) == algorithm
        else:
            with pytest.raises(ChecksumMismatch, match="c/k: bytes read do not match the source"):
                found.check("c/k", sha256)


def test_the_cheapest_whole_object_checksum_is_chosen_and_composite_ones_are_not() -> None:
    """The SHA-256 the copy computes anyway, then a CRC; a COMPOSITE checksum (`-N`: of the
    parts' checksums) or a value of another length is no whole-object checksum."""
    chosen = SourceSum.stated_in({"sha1": STATED["sha1"], "crc32c": STATED["crc32c"]})
    assert chosen is not None and chosen.algorithm == "crc32c"
    every = SourceSum.stated_in(STATED)
    assert every is not None and every.algorithm == "sha256"
    assert SourceSum.stated_in({"crc32c": "e3069283-2", "crc64nvme": "ae8b"}) is None
    assert SourceSum.stated_in({"md5": hashlib.md5(DATA).hexdigest()}) is None
    empty = SourceSum.stated_in({"crc64nvme": "0" * 16})
    assert empty is not None and empty.check("c/k", hashlib.sha256(b"").hexdigest())

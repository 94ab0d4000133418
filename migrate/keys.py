"""Which object keys a destination may store under another name."""

from __future__ import annotations

import posixpath


def portable_key(key: str, size: int = 0) -> bool:
    """False for a key with an empty, '.' or '..' segment: stores that keep objects as
    files (SeaweedFS's filer, say) store `a//b` as `a/b`, and `a/./b` or `a/../b` as a
    path, so the copy lands under another key, maybe another object's. A trailing '/' is
    fine on a folder marker (no bytes); such a store keeps none of an object's bytes
    under it (a folder). Every store of this kind renames them: verify, delta and the
    dry run treat their copies apart (`may_be_renamed` is wider)."""
    if key.endswith("/"):
        if size > 0:
            return False
        key = key[:-1]
    return not any(s in ("", ".", "..") for s in key.split("/"))


def may_be_renamed(key: str, size: int = 0) -> bool:
    """Whether some store keeping objects as files may store the key under another name:
    the keys `portable_key` refuses, and a key with a backslash, which SeaweedFS keeps as
    '/' and plain S3 or a local directory keep as it is. Their copies are looked for under
    the name such a store would make (each answers for itself); the plan warns of them."""
    return not portable_key(key, size) or "\\" in key


def filed_name(key: str) -> str:
    """The key such a store keeps an object written as `key` under: `a//b`, `a/./b`, `a\\b`
    and `/a/b` as `a/b`, `a/../b` as `b`."""
    return posixpath.normpath("/" + key.replace("\\", "/")).lstrip("/")

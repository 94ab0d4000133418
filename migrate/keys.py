"""Which object keys a destination may store under another name."""

from __future__ import annotations


def portable_key(key: str, size: int = 0) -> bool:
    """False for a key with an empty, '.' or '..' segment: stores that keep objects as
    files (SeaweedFS's filer, say) store `a//b` as `a/b`, and `a/./b` or `a/../b` as a
    path, so the copy lands under another key, maybe another object's. A trailing '/' is
    fine on a folder marker (no bytes); such a store keeps none of an object's bytes
    under it (a folder)."""
    if key.endswith("/"):
        if size > 0:
            return False
        key = key[:-1]
    return not any(s in ("", ".", "..") for s in key.split("/"))

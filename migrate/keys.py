"""Which object keys a destination may store under another name."""

from __future__ import annotations

import posixpath


def portable_key(key: str, size: int = 0) -> bool:
    """False for a key with an empty, '.' or '..' segment, or a backslash: stores that keep
    objects as files (SeaweedFS's filer, say) store `a//b` as `a/b`, `a/./b` or `a/../b`
    as a path, and `a\\b` as `a/b`, so the copy lands under another key, maybe another
    object's. A trailing '/' is fine on a folder marker (no bytes); such a store keeps none
    of an object's bytes under it (a folder)."""
    if "\\" in key:
        return False
    if key.endswith("/"):
        if size > 0:
            return False
        key = key[:-1]
    return not any(s in ("", ".", "..") for s in key.split("/"))


def filed_name(key: str) -> str:
    """The key such a store keeps an object written as `key` under: `a//b`, `a/./b`, `a\\b`
    and `/a/b` as `a/b`, `a/../b` as `b`."""
    return posixpath.normpath("/" + key.replace("\\", "/")).lstrip("/")

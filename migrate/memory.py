"""Part buffers go back to the system when freed.

glibc serves an allocation above its mmap threshold with mmap and frees it with munmap, but
raises the threshold to the size of each such block freed (up to 32 MiB): after the first
16 MiB part buffer is freed, the next ones come from the heap arenas (one per thread), where
freed blocks stay resident. A copy then held twice its buffers (651 MiB instead of ~250 in
bench scenario 1). Setting the threshold explicitly turns that adjustment off, so resident
memory follows the buffers in use.
"""

from __future__ import annotations

import ctypes
import sys

_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
_THRESHOLD = 4 * 1024 * 1024


def return_large_buffers() -> bool:
    """Make blocks of 4 MiB and more go back to the system when freed (glibc only; a no-op
    elsewhere). True when the setting was applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl): nothing to tune
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD))

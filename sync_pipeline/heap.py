"""Large temporary buffers go back to the operating system as soon as they are freed.

A full sweep reads page after page of JSON: each HTTP body, its text and the decoder's big lists
are a few hundred KB to a few MB, and live for one page. glibc's malloc serves a block that big
with its own mmap, unmapped when freed, but only until the first such block is freed: from then
on it raises that threshold to the freed block's size and serves later ones from its heaps,
where the space they leave is kept by the process (wedged between the small objects a run keeps)
instead of returned. Over 100,000 documents per side that was about 40 MB of the run's peak RSS
(docs/performance.md). Pinning the threshold at glibc's default keeps every large block mapped
on its own: freed, it is gone.
"""

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3
"""mallopt's parameter number (malloc.h)."""
LARGE_BLOCK = 128 * 1024
"""glibc's default threshold: blocks from this size up are mapped on their own."""


def return_large_blocks() -> bool:
    """Pin glibc's mmap threshold for this process (a no-op elsewhere); True if it was set."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to pin
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK))

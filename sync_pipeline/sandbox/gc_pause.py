"""Pause Python's cycle collector during bulk loads and saves of the sandbox states.

Why: seeding, saving or loading 100,000 documents per organization allocates millions of
acyclic dicts and lists; with the collector on, it rescans the growing heap again and again
and these steps take three to five times longer (measured: CRM ``to_json`` 4.8 s -> 1.0 s).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Disable the cycle collector inside the block (nesting-safe), re-enable it after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()

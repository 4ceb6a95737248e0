"""Per-texel work in cache-sized pieces, spread over the CPU's cores.

A 2048² bake touches ~7 M texels per pass; done in one piece every temporary is a 28 MB array that
lives in main memory. In pieces of ``TEXEL_CHUNK`` the temporaries stay in the CPU caches, and the
pieces run on the calling thread and a small shared pool of helper threads (numpy and OpenCV release
the GIL on large arrays), one thread per core in all: the caller works instead of waiting, and each
helper thread costs a malloc arena of its own (tens of MB of memory at 2048²). Each piece is
independent of the others, so the result is the same as one call over everything.
"""

from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

TEXEL_CHUNK = 1 << 18  # texels per piece (1 MB per float32 temporary)
MAX_THREADS = 4  # the calling thread and up to three helpers
_THREAD_PREFIX = "topos-texels"
_POOL: list[tuple[ThreadPoolExecutor | None, int]] = []
_POOL_LOCK = threading.Lock()
_INSIDE = threading.local()  # .piece: this thread is running a piece


def in_chunks(work, count: int) -> list:
    """``work(slice)`` over ``range(count)`` in pieces of ``TEXEL_CHUNK``; the results in order.

    Called from inside a piece (of this or another ``in_chunks``), the pieces run there one after the
    other (no thread waits on the pool it works for).
    """
    pieces = [slice(start, start + TEXEL_CHUNK) for start in range(0, count, TEXEL_CHUNK)] or [slice(0, 0)]
    pool, helper_count = _pool()
    if len(pieces) == 1 or not helper_count or getattr(_INSIDE, "piece", False):
        return [work(piece) for piece in pieces]
    results = [None] * len(pieces)
    next_piece = itertools.count().__next__  # atomic under the GIL: each piece is taken once

    def take_pieces() -> None:
        _INSIDE.piece = True
        try:
            for index in iter(next_piece, None):
                if index >= len(pieces):
                    return
                results[index] = work(pieces[index])
        finally:
            _INSIDE.piece = False

    helpers = [pool.submit(take_pieces) for _ in range(min(helper_count, len(pieces) - 1))]
    try:
        take_pieces()
    finally:  # the helpers write into the caller's arrays: never return (or raise) before they stop
        for helper in helpers:
            helper.exception()
    for helper in helpers:
        helper.result()
    return results


def _pool() -> tuple[ThreadPoolExecutor | None, int]:
    """The helper threads and their number (none on a single core)."""
    with _POOL_LOCK:
        if not _POOL:
            helpers = max(0, min(MAX_THREADS, os.cpu_count() or 1) - 1)
            _POOL.append((ThreadPoolExecutor(max_workers=helpers, thread_name_prefix=_THREAD_PREFIX) if helpers else None,
                          helpers))
        return _POOL[0]

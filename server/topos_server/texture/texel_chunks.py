"""Per-texel work in cache-sized pieces, spread over the CPU's cores.

A 2048² bake touches ~7 M texels per pass; done in one piece every temporary is a 28 MB array that
lives in main memory. In pieces of ``TEXEL_CHUNK`` the temporaries stay in the CPU caches, and the
pieces run on a small shared thread pool (numpy and OpenCV release the GIL on large arrays). Each
piece is independent of the others, so the result is the same as one call over everything.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

TEXEL_CHUNK = 1 << 18  # texels per piece (1 MB per float32 temporary)
_THREAD_PREFIX = "topos-texels"
_POOL: list[ThreadPoolExecutor] = []
_POOL_LOCK = threading.Lock()


def in_chunks(work, count: int) -> list:
    """``work(slice)`` over ``range(count)`` in pieces of ``TEXEL_CHUNK``; the results in order.

    Called from one of the pool's own threads, the pieces run there one after the other (no thread
    waits on the pool it runs in).
    """
    pieces = [slice(start, start + TEXEL_CHUNK) for start in range(0, count, TEXEL_CHUNK)] or [slice(0, 0)]
    if len(pieces) == 1 or threading.current_thread().name.startswith(_THREAD_PREFIX):
        return [work(piece) for piece in pieces]
    return list(_pool().map(work, pieces))


def _pool() -> ThreadPoolExecutor:
    with _POOL_LOCK:
        if not _POOL:
            _POOL.append(ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)),
                                            thread_name_prefix=_THREAD_PREFIX))
        return _POOL[0]

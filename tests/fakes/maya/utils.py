"""Fake ``maya.utils``: on the main thread deferred calls run at once; from other threads they wait for the
session's next ``run_idle`` (Maya runs them on the main thread when it is idle)."""

import threading

from . import session as _session


def executeDeferred(fn, *args):  # noqa: N802 - Maya's name
    s = _session.current
    s.record("utils.executeDeferred", (fn,) + args, {})
    s.deferred.append(fn)
    if threading.get_ident() != s.main_thread:
        s.pending_deferred.append(lambda: fn(*args))
    elif callable(fn):
        fn(*args)
    else:
        exec(fn, {})

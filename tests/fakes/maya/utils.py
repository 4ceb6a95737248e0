"""Fake ``maya.utils``: deferred calls run at once (Maya runs them at the next idle)."""

from . import session as _session


def executeDeferred(fn, *args):  # noqa: N802 - Maya's name
    _session.current.record("utils.executeDeferred", (fn,) + args, {})
    _session.current.deferred.append(fn)
    if callable(fn):
        fn(*args)
    else:
        exec(fn, {})

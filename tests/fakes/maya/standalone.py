"""Fake ``maya.standalone`` (tests only): records start and stop of the headless Maya session."""

from . import session as _session


def initialize(name="python"):
    _session.current.record("standalone.initialize", (), {"name": name})
    _session.current.standalone = True


def uninitialize():
    _session.current.record("standalone.uninitialize", (), {})
    _session.current.standalone = False

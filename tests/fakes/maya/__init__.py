"""Fake ``maya`` package (tests only)."""

from . import session  # noqa: F401

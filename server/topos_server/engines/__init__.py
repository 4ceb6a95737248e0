"""Engines turn portraits into :class:`topos_sdk.HeadResult`s. Look one up with :func:`get_engine`."""

from .base import Engine, EngineUnavailable, GenerateOptions, ProgressCallback, get_engine, engine_names, shared_engine

__all__ = ["Engine", "EngineUnavailable", "GenerateOptions", "ProgressCallback", "get_engine", "engine_names", "shared_engine"]

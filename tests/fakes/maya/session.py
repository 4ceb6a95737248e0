"""State behind the fake maya.cmds / maya.mel / maya.utils: every call recorded, UI controls remembered."""

from __future__ import annotations

import itertools
import threading


class MayaSession:
    def __init__(self):
        self.calls: list[tuple[str, tuple, dict]] = []
        self.option_vars: dict[str, object] = {}
        self.controls: dict[str, dict] = {}
        self.script_jobs: dict[int, object] = {}
        self.deferred: list[object] = []
        self.plugins_loaded: set[str] = set()
        self.nodes: dict[str, dict] = {}
        self.attributes: dict[str, object] = {}
        self.connections: list[tuple[str, str]] = []
        self.cancel_pressed = False          # what progressBar -q -isCancelled answers
        self.rejected_flags: set[str] = set()  # flags mayaUSDImport refuses (an older maya-usd)
        self.file_dialog_answer: list[str] | None = None
        self.batch = False
        self.maya_usd_version = "0.30.0"     # what pluginInfo -q -version answers for mayaUsdPlugin
        self.timeline = {"minTime": 101.0, "maxTime": 200.0, "animationStartTime": 101.0, "animationEndTime": 200.0}
        self.current_time = 120.0
        self.pending_deferred: list = []     # executeDeferred from other threads, run by run_idle
        self.main_thread = threading.get_ident()
        self.off_main_thread: list[str] = []  # commands called from another thread (Maya forbids it)
        self._ids = itertools.count(1)
        self._last_option_menu: str | None = None

    def record(self, name, args, kwargs):
        if threading.get_ident() != self.main_thread and not name.startswith("utils."):
            self.off_main_thread.append(name)
        self.calls.append((name, args, dict(kwargs)))

    def calls_to(self, name: str) -> list[dict]:
        """The keyword arguments of every call to command ``name`` (positional args under ``"_args"``)."""
        return [dict(kw, _args=args) for n, args, kw in self.calls if n == name]

    def next_id(self) -> int:
        return next(self._ids)

    def run_idle(self, times: int = 1) -> None:
        """Let Maya go idle: run what other threads deferred to the main thread, and the idle script jobs."""
        for _ in range(times):
            pending, self.pending_deferred[:] = list(self.pending_deferred), []
            for fn in pending:
                fn()
            for callback in list(self.script_jobs.values()):
                callback()


current = MayaSession()

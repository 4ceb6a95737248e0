"""State behind the fake maya.cmds / maya.mel / maya.utils: every call recorded, UI controls remembered."""

from __future__ import annotations

import itertools


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
        self._ids = itertools.count(1)
        self._last_option_menu: str | None = None

    def record(self, name, args, kwargs):
        self.calls.append((name, args, dict(kwargs)))

    def calls_to(self, name: str) -> list[dict]:
        """The keyword arguments of every call to command ``name`` (positional args under ``"_args"``)."""
        return [dict(kw, _args=args) for n, args, kw in self.calls if n == name]

    def next_id(self) -> int:
        return next(self._ids)

    def run_idle(self, times: int = 1) -> None:
        """Let Maya go idle: run the idle script jobs (and the deferred calls they queue)."""
        for _ in range(times):
            for callback in list(self.script_jobs.values()):
                callback()


current = MayaSession()

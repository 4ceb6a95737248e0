"""One generation: ``generate_head`` on a worker thread, Maya's main progress bar and cancel on the UI thread.

The worker never touches ``maya.cmds``; the UI thread polls it from an ``idleEvent`` script job, moves the
progress bar, notices Esc / the dialog's Cancel, and imports the asset (or shows the failure) at the end.
Cancelling takes effect at the next progress report from the SDK; the SDK writes the asset atomically,
so a cancelled job leaves nothing half-written.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Callable

import maya.mel
import maya.utils
from maya import cmds

from . import feedback, importer
from .settings import DialogSettings


class GenerationCancelled(Exception):
    """Raised inside the SDK's progress callback to stop a cancelled job."""


@dataclass
class GenerationRequest:
    portrait: str
    out_dir: str
    name: str
    server: str | None
    engine: str
    seed: int
    texture_size: int
    import_mode: str

    @classmethod
    def from_settings(cls, settings: DialogSettings) -> "GenerationRequest":
        from topos_sdk.errors import InvalidInputError
        from topos_sdk.generate import asset_name_for

        if not settings.portrait:
            raise InvalidInputError("choose a portrait image first")
        if not settings.output_folder:
            raise InvalidInputError("choose an output folder first")
        base = f"{asset_name_for(settings.portrait)}_s{settings.seed}"
        return cls(portrait=settings.portrait, out_dir=settings.output_folder,
                   name=unused_asset_name(settings.output_folder, base), server=settings.server_address,
                   engine=settings.engine, seed=settings.seed, texture_size=settings.texture_size,
                   import_mode=settings.import_mode)


def unused_asset_name(out_dir: str, base: str) -> str:
    """``base``, or ``base_2``, ``base_3``… : a head already in a scene is never overwritten."""
    name, n = base, 1
    while os.path.exists(os.path.join(out_dir, name)):
        n += 1
        name = f"{base}_{n}"
    return name


def main_progress_bar() -> str:
    return maya.mel.eval("$topos_tmp = $gMainProgressBar")


class GenerationJob:
    """Start with :meth:`start`; ``on_done(nodes | None)`` runs on the UI thread when it is over."""

    def __init__(self, request: GenerationRequest, on_done: Callable[[list[str] | None], None] | None = None):
        self.request = request
        self.on_done = on_done
        self.usda_path: str | None = None
        self.error: BaseException | None = None
        self.imported_nodes: list[str] | None = None
        self._progress = ("starting", 0.0)  # (stage, fraction), written by the worker
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._script_job: int | None = None
        self._bar = ""
        self.finished = False

    # -- UI thread -------------------------------------------------------------------------------------
    def start(self) -> None:
        self._bar = main_progress_bar()
        cmds.progressBar(self._bar, e=True, beginProgress=True, isInterruptable=True, maxValue=100,
                         status="TOPOS: starting")
        self._thread = threading.Thread(target=self._run, name="topos-generate", daemon=True)
        self._thread.start()
        self._script_job = cmds.scriptJob(idleEvent=self.poll)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def poll(self) -> None:
        """Called on idle: mirror the worker's progress, pass on a cancel, finish when the worker is done."""
        if self.finished:
            return
        if cmds.progressBar(self._bar, q=True, isCancelled=True):
            self._cancel.set()
        stage, fraction = self._progress
        cmds.progressBar(self._bar, e=True, progress=int(round(100 * fraction)), status=f"TOPOS: {stage}")
        if self.running:
            return
        self._finish()

    def _finish(self) -> None:
        self.finished = True
        job, self._script_job = self._script_job, None
        if job is not None:
            # a script job may not kill itself from inside its own callback
            maya.utils.executeDeferred(lambda: cmds.scriptJob(kill=job, force=True))
        cmds.progressBar(self._bar, e=True, endProgress=True)
        if isinstance(self.error, GenerationCancelled):
            feedback.show_cancelled()
        elif self.error is not None:
            feedback.show_failure("Could not generate the head", self.error)
        else:
            try:
                self.imported_nodes = importer.import_asset(self.usda_path, self.request.import_mode)
                cmds.select(self.imported_nodes, replace=True)
            except Exception as exc:  # noqa: BLE001 - every failure becomes the one dialog
                self.error = exc
                feedback.show_failure(f"Generated {self.usda_path} but could not import it", exc)
        if self.on_done is not None:
            self.on_done(self.imported_nodes)

    # -- worker thread (no maya.cmds here) ----------------------------------------------------------------
    def _on_progress(self, stage: str, fraction: float) -> None:
        if self._cancel.is_set():
            raise GenerationCancelled()
        self._progress = (stage, float(fraction))

    def _run(self) -> None:
        from topos_sdk.generate import generate_head

        r = self.request
        try:
            if self._cancel.is_set():
                raise GenerationCancelled()
            path = generate_head(r.portrait, r.out_dir, server=r.server, engine=r.engine, seed=r.seed,
                                 texture_size=r.texture_size, name=r.name, on_progress=self._on_progress)
            self.usda_path = os.fspath(path)
            self._progress = ("importing", 1.0)
        except BaseException as exc:  # noqa: BLE001 - handed to the UI thread
            self.error = exc

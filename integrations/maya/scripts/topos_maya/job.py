"""One generation: ``generate_head`` in a ``mayapy`` subprocess, Maya's main progress bar and cancel here.

The USD asset is written by the subprocess (:mod:`topos_maya.generation_process`), never by a thread of
Maya's own process, so nothing races Maya's USD layers. A reader thread collects the worker's messages;
a ticker thread that sleeps between ticks asks the main thread to :meth:`GenerationJob.poll` a few
times a second (``maya.utils.executeDeferred``): the poll moves the progress bar, passes on Esc / Cancel,
and imports the asset (or shows the failure) at the end. No ``maya.cmds`` call happens off the main thread.
Cancelling takes effect at the worker's next progress report; the SDK writes atomically, so a cancelled
job leaves nothing half-written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass
from typing import Callable

import maya.mel
import maya.utils
from maya import cmds

from . import feedback, importer
from .generation_process import CANCEL, GenerationCancelled
from .settings import DialogSettings

POLL_SECONDS = 0.2


class GenerationFailed(Exception):
    """The worker could not make the head; the message is its one-line reason."""


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
    topology: str = ""  # "" = the reference topology

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
                   import_mode=settings.import_mode, topology=settings.topology)

    def worker_request(self) -> dict:
        """The ``generate_head`` arguments the worker receives."""
        r = asdict(self)
        return {"image": r["portrait"], "out_dir": r["out_dir"], "name": r["name"], "server": r["server"],
                "engine": r["engine"], "seed": r["seed"], "texture_size": r["texture_size"],
                "topology": r["topology"] or None}


def unused_asset_name(out_dir: str, base: str) -> str:
    """``base``, or ``base_2``, ``base_3``… : a head already in a scene is never overwritten."""
    name, n = base, 1
    while os.path.exists(os.path.join(out_dir, name)):
        n += 1
        name = f"{base}_{n}"
    return name


def main_progress_bar() -> str:
    return maya.mel.eval("$topos_tmp = $gMainProgressBar")


def worker_command() -> list[str]:
    """``mayapy -m topos_maya.generation_process`` of this Maya (``sys.executable`` is Maya itself)."""
    location = os.environ.get("MAYA_LOCATION")
    suffix = ".exe" if sys.platform.startswith("win") else ""
    mayapy = os.path.join(location, "bin", "mayapy" + suffix) if location else sys.executable
    return [mayapy, "-m", "topos_maya.generation_process"]


def worker_environment() -> dict:
    """Maya's environment, with Maya's Python path as the worker's (topos_sdk, maya-usd's pxr, …)."""
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(paths), PYTHONUNBUFFERED="1")


class GenerationJob:
    """Start with :meth:`start`; ``on_done(nodes | None)`` runs on the main thread when it is over."""

    def __init__(self, request: GenerationRequest, on_done: Callable[[list[str] | None], None] | None = None):
        self.request = request
        self.on_done = on_done
        self.usda_path: str | None = None
        self.error: BaseException | None = None
        self.imported_nodes: list[str] | None = None
        self.finished = False
        self._progress = ("starting", 0.0)      # (stage, fraction), written by the reader thread
        self._process: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._stopped = threading.Event()       # the ticker's sleep; set when the job is over
        self._poll_queued = threading.Event()   # at most one poll waiting on the main thread
        self._cancel_sent = False
        self._bar = ""

    # -- main thread -----------------------------------------------------------------------------------------
    def start(self) -> None:
        self._bar = main_progress_bar()
        cmds.progressBar(self._bar, e=True, beginProgress=True, isInterruptable=True, maxValue=100,
                         status="TOPOS: starting")
        try:
            self._process = subprocess.Popen(worker_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             stderr=None, text=True, env=worker_environment())
            self._process.stdin.write(json.dumps(self.request.worker_request()) + "\n")
            self._process.stdin.flush()
        except OSError as exc:
            self.error = GenerationFailed(f"cannot start the TOPOS worker ({exc})")
            self._finish()
            return
        self._reader = threading.Thread(target=self._read_worker, name="topos-worker-reader", daemon=True)
        self._reader.start()
        threading.Thread(target=self._tick, name="topos-poll-ticker", daemon=True).start()

    def cancel(self) -> None:
        if self._process is None or self._cancel_sent or self._process.poll() is not None:
            return
        self._cancel_sent = True
        try:
            self._process.stdin.write(json.dumps(CANCEL) + "\n")
            self._process.stdin.flush()
        except OSError:
            pass  # the worker is already gone

    @property
    def running(self) -> bool:
        return self._reader is not None and self._reader.is_alive()

    def poll(self) -> None:
        """On the main thread: mirror the worker's progress, pass on a cancel, finish when it is done."""
        self._poll_queued.clear()
        if self.finished:
            return
        if cmds.progressBar(self._bar, q=True, isCancelled=True):
            self.cancel()
        stage, fraction = self._progress
        cmds.progressBar(self._bar, e=True, progress=int(round(100 * fraction)), status=f"TOPOS: {stage}")
        if not self.running:
            self._finish()

    def _finish(self) -> None:
        self.finished = True
        self._stopped.set()
        if self._process is not None:
            self._process.wait()
            self._process.stdin.close()
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

    # -- background threads (no maya.cmds here) -------------------------------------------------------------
    def _tick(self) -> None:
        while not self._stopped.wait(POLL_SECONDS):
            if not self._poll_queued.is_set():
                self._poll_queued.set()
                maya.utils.executeDeferred(self.poll)

    def _read_worker(self) -> None:
        got_answer = False
        for line in self._process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue  # a library printing to stdout; not ours
            if "progress" in message:
                stage, fraction = message["progress"]
                self._progress = (stage, float(fraction))
            elif "asset" in message:
                self.usda_path, self._progress, got_answer = message["asset"], ("importing", 1.0), True
            elif message.get("cancelled"):
                self.error, got_answer = GenerationCancelled(), True
            elif "error" in message:
                self.error, got_answer = GenerationFailed(message["error"]), True
        if not got_answer:
            code = self._process.wait()
            self.error = GenerationFailed(f"the TOPOS worker stopped without an answer (exit status {code})")

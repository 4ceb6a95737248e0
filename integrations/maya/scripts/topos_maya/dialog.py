"""The TOPOS dialog (plain maya.cmds UI, so it runs in every Maya with no Qt binding question)."""

from __future__ import annotations

from maya import cmds

from . import feedback, settings
from .job import GenerationJob, GenerationRequest
from .settings import DialogSettings

WINDOW = "toposGenerateWindow"
PORTRAIT = "toposPortraitField"
SERVER = "toposServerField"
ENGINE = "toposEngineMenu"
SEED = "toposSeedField"
TEXTURE_SIZE = "toposTextureSizeMenu"
OUTPUT = "toposOutputFolderField"
IMPORT_MODE = "toposImportModeRadio"
TOPOLOGY = "toposTopologyMenu"
GENERATE_BUTTON = "toposGenerateButton"
CANCEL_BUTTON = "toposCancelButton"

IMPORT_MODE_LABELS = ("Import as Maya nodes", "Live USD stage (proxy)")
IMAGE_FILTER = "Images (*.jpg *.jpeg *.png *.webp *.bmp *.tif *.tiff);;All files (*.*)"

_current_job: GenerationJob | None = None


def show() -> str:
    """Open (or bring back) the dialog, filled with the remembered choices."""
    if cmds.window(WINDOW, exists=True):
        cmds.deleteUI(WINDOW)
    remembered = settings.load()
    cmds.window(WINDOW, title="TOPOS: portrait to head", widthHeight=(480, 260))
    cmds.columnLayout(adjustableColumn=True, rowSpacing=4)
    cmds.textFieldButtonGrp(PORTRAIT, label="Portrait", text=remembered.portrait, buttonLabel="Browse",
                            buttonCommand=lambda *_: _browse(PORTRAIT, file_mode=1),
                            annotation="Front-facing photo of one person (jpg/png)")
    cmds.textFieldGrp(SERVER, label="Server", text=remembered.server,
                      annotation="host:port of `topos serve`, or 'local' to run the engine inside Maya")
    cmds.optionMenuGrp(ENGINE, label="Engine", annotation="classic: morphable-model fit; topos: learned engine")
    for name in settings.ENGINES:
        cmds.menuItem(label=name)
    cmds.optionMenuGrp(ENGINE, e=True, value=remembered.engine)
    cmds.intFieldGrp(SEED, label="Seed", numberOfFields=1, value1=remembered.seed,
                     annotation="Same portrait + seed + engine + texture size = the same head")
    cmds.optionMenuGrp(TEXTURE_SIZE, label="Texture size", annotation="Pixels per UDIM tile")
    for size in settings.TEXTURE_SIZES:
        cmds.menuItem(label=str(size))
    cmds.optionMenuGrp(TEXTURE_SIZE, e=True, value=str(remembered.texture_size))
    cmds.optionMenuGrp(TOPOLOGY, label="Topology",
                       annotation="The mesh the head comes out in: the reference, or a studio topology "
                                  "registered with `topos topology add`")
    choices = settings.topology_choices()
    if remembered.topology and remembered.topology not in choices:
        choices.append(remembered.topology)  # registered on the server, or removed since
    for name in choices:
        cmds.menuItem(label=name)
    cmds.optionMenuGrp(TOPOLOGY, e=True, value=remembered.topology or settings.REFERENCE_TOPOLOGY)
    cmds.textFieldButtonGrp(OUTPUT, label="Output folder", text=remembered.output_folder, buttonLabel="Browse",
                            buttonCommand=lambda *_: _browse(OUTPUT, file_mode=3),
                            annotation="The asset folder NAME/ (NAME.usda, geo.usdc, textures) is written here")
    cmds.radioButtonGrp(IMPORT_MODE, label="Bring in as", numberOfRadioButtons=2,
                        labelArray2=IMPORT_MODE_LABELS,
                        select=settings.IMPORT_MODES.index(remembered.import_mode) + 1)
    cmds.rowLayout(numberOfColumns=3)
    cmds.button(GENERATE_BUTTON, label="Generate", command=lambda *_: on_generate())
    cmds.button(CANCEL_BUTTON, label="Cancel", enable=False, command=lambda *_: on_cancel())
    cmds.button(label="Close", command=lambda *_: cmds.deleteUI(WINDOW))
    cmds.setParent("..")
    cmds.showWindow(WINDOW)
    return WINDOW


def read_settings() -> DialogSettings:
    """The choices currently in the dialog."""
    return DialogSettings(
        portrait=cmds.textFieldButtonGrp(PORTRAIT, q=True, text=True).strip(),
        server=cmds.textFieldGrp(SERVER, q=True, text=True).strip(),
        engine=cmds.optionMenuGrp(ENGINE, q=True, value=True),
        seed=int(cmds.intFieldGrp(SEED, q=True, value1=True)),
        texture_size=int(cmds.optionMenuGrp(TEXTURE_SIZE, q=True, value=True)),
        output_folder=cmds.textFieldButtonGrp(OUTPUT, q=True, text=True).strip(),
        import_mode=settings.IMPORT_MODES[cmds.radioButtonGrp(IMPORT_MODE, q=True, select=True) - 1],
        topology=cmds.optionMenuGrp(TOPOLOGY, q=True, value=True),
    ).validated()


def on_generate() -> GenerationJob | None:
    global _current_job
    if _current_job is not None and not _current_job.finished:
        return _current_job
    try:
        chosen = read_settings()
        settings.save(chosen)
        request = GenerationRequest.from_settings(chosen)
    except Exception as exc:  # noqa: BLE001 - bad input: one dialog
        feedback.show_failure("Cannot start", exc)
        return None
    _current_job = GenerationJob(request, on_done=lambda nodes: _set_running(False))
    _set_running(True)
    _current_job.start()
    return _current_job


def on_cancel() -> None:
    if _current_job is not None:
        _current_job.cancel()


def _set_running(running: bool) -> None:
    if cmds.window(WINDOW, exists=True):
        cmds.button(GENERATE_BUTTON, e=True, enable=not running)
        cmds.button(CANCEL_BUTTON, e=True, enable=running)


def _browse(field: str, file_mode: int) -> None:
    flags = {"fileFilter": IMAGE_FILTER} if file_mode == 1 else {}
    picked = cmds.fileDialog2(fileMode=file_mode, dialogStyle=2, **flags)
    if picked:
        cmds.textFieldButtonGrp(field, e=True, text=picked[0])

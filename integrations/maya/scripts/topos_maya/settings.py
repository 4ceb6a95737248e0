"""The dialog's choices, remembered between sessions in Maya optionVars."""

from __future__ import annotations

from dataclasses import dataclass, fields

from maya import cmds

IMPORT_MODES = ("import", "proxy")  # mayaUSDImport into Maya nodes | live mayaUsdProxyShape stage
ENGINES = ("classic", "topos")
TEXTURE_SIZES = (512, 1024, 2048)
LOCAL_SERVER = "local"  # run the engine inside mayapy instead of calling a server
REFERENCE_TOPOLOGY = "reference"  # the menu entry for the reference (ICT) topology: no studio topology

OPTION_VAR_PREFIX = "topos_"


@dataclass
class DialogSettings:
    portrait: str = ""
    server: str = LOCAL_SERVER
    engine: str = "classic"
    seed: int = 0
    texture_size: int = 1024
    output_folder: str = ""
    import_mode: str = "import"
    topology: str = ""  # a studio topology (`topos topology add`); "" = the reference topology

    def validated(self) -> "DialogSettings":
        """A copy with out-of-range choices replaced by defaults (an old optionVar may hold anything)."""
        default = DialogSettings()
        return DialogSettings(
            portrait=self.portrait,
            server=self.server.strip() or LOCAL_SERVER,
            engine=self.engine if self.engine in ENGINES else default.engine,
            seed=int(self.seed),
            texture_size=self.texture_size if self.texture_size in TEXTURE_SIZES else default.texture_size,
            output_folder=self.output_folder,
            import_mode=self.import_mode if self.import_mode in IMPORT_MODES else default.import_mode,
            topology="" if self.topology.strip() in ("", REFERENCE_TOPOLOGY) else self.topology.strip(),
        )

    @property
    def server_address(self) -> str | None:
        """``None`` for in-process generation, else ``host:port``."""
        return None if self.server in ("", LOCAL_SERVER) else self.server


def topology_choices() -> list[str]:
    """The topology menu: the reference, then the studio topologies registered in this machine's asset cache
    (a server's own are typed into the field: the menu cannot ask it)."""
    from topos_sdk.studio_topologies import registered_topology_names

    return [REFERENCE_TOPOLOGY, *registered_topology_names()]


def option_var_name(field_name: str) -> str:
    return OPTION_VAR_PREFIX + field_name


def load() -> DialogSettings:
    values = {}
    for f in fields(DialogSettings):
        name = option_var_name(f.name)
        if cmds.optionVar(exists=name):
            values[f.name] = cmds.optionVar(q=name)
    try:
        return DialogSettings(**values).validated()
    except (TypeError, ValueError):
        return DialogSettings()


def save(settings: DialogSettings) -> None:
    for f in fields(DialogSettings):
        value = getattr(settings, f.name)
        flag = "iv" if isinstance(value, int) else "sv"
        cmds.optionVar(**{flag: (option_var_name(f.name), value)})

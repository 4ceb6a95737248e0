"""Fake ``hou`` (tests only): nodes with parameters, a recording Geometry, interruptable operations, UI messages.

Every call the shims make is appended to ``calls`` as ``(name, args, kwargs)``.
"""

from __future__ import annotations

import enum
import re

import numpy as np

calls: list[tuple[str, tuple, dict]] = []
env: dict[str, str] = {}             # Houdini variables ($HIP, $JOB, ...): hou.getenv and parameter expansion
node_types: dict[str, dict] = {}     # "Lop/topos::head::1.0" -> parm specs, for Node.createNode
nodes: dict[str, "Node"] = {}
saved_hip_files: list[str] = []
messages: list[tuple[str, dict]] = []
ui_available = True
interrupt_after: int | None = None   # updateLongProgress raises OperationInterrupted after this many calls
_pwd = None
_phm = None


def reset() -> None:
    global ui_available, interrupt_after, _pwd, _phm
    calls.clear()
    messages.clear()
    env.clear()
    node_types.clear()
    nodes.clear()
    saved_hip_files.clear()
    ui_available, interrupt_after, _pwd, _phm = True, None, None, None


def getenv(name, default=None):
    return env.get(name, default)


def expand(text: str) -> str:
    """``$VAR`` / ``${VAR}`` from ``env`` (unknown variables stay as written, as in Houdini)."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), m.group(0)), str(text))


def node(path):
    return nodes.get(path)


class _HipFile:
    def save(self, file_name=None, save_to_recent_files=True):
        _record("hipFile.save", file_name)
        saved_hip_files.append(file_name)


hipFile = _HipFile()  # noqa: N816 - hou's name


def _record(name, *args, **kw):
    calls.append((name, args, kw))


def calls_to(name: str) -> list[tuple[tuple, dict]]:
    return [(a, k) for n, a, k in calls if n == name]


class Error(Exception):
    pass


class OperationInterrupted(Error):
    pass


class NodeError(Error):
    pass


class NodeWarning(Error):
    pass


class OperationFailed(Error):
    pass


class severityType(enum.Enum):  # noqa: N801 - hou's name
    Message = 0
    ImportantMessage = 1
    Warning = 2
    Error = 3
    Fatal = 4


class attribType(enum.Enum):  # noqa: N801
    Point = "point"
    Prim = "prim"
    Vertex = "vertex"
    Global = "global"


class _UI:
    def displayMessage(self, text, **kw):  # noqa: N802
        _record("ui.displayMessage", text, **kw)
        messages.append((text, kw))
        return 0


ui = _UI()


def isUIAvailable():  # noqa: N802
    return ui_available


def pwd():
    return _pwd


def phm():
    return _phm


def set_pwd(node) -> None:
    global _pwd
    _pwd = node


def set_phm(module) -> None:
    global _phm
    _phm = module


class InterruptableOperation:
    def __init__(self, operation_name, long_operation_name=None, open_interrupt_dialog=False):
        _record("InterruptableOperation", operation_name, long_operation_name=long_operation_name,
                open_interrupt_dialog=open_interrupt_dialog)
        self.updates: list[tuple[float, str]] = []

    def __enter__(self):
        _record("InterruptableOperation.enter")
        return self

    def __exit__(self, *exc):
        _record("InterruptableOperation.exit")
        return False

    def updateLongProgress(self, percentage=-1.0, long_op_status=None):  # noqa: N802
        _record("updateLongProgress", percentage, long_op_status)
        self.updates.append((percentage, long_op_status))
        if interrupt_after is not None and len(self.updates) > interrupt_after:
            raise OperationInterrupted("interrupted by the user")


class Parm:
    def __init__(self, node, name, value, parm_type):
        self._node, self._name, self._value, self.parm_type = node, name, value, parm_type

    def name(self):
        return self._name

    def node(self):
        return self._node

    def eval(self):
        if self.parm_type in ("integer", "toggle", "button"):
            return int(self._value)
        if self.parm_type == "float":
            return float(self._value)
        return expand(self._value)

    def evalAsString(self):  # noqa: N802
        return expand(self._value)

    def unexpandedString(self):  # noqa: N802
        return str(self._value)

    def evalAsInt(self):  # noqa: N802
        return int(self._value)

    def set(self, value):
        _record("Parm.set", self._node.path(), self._name, value)
        self._value = value

    def pressButton(self):  # noqa: N802
        _record("Parm.pressButton", self._node.path(), self._name)


class Geometry:
    """Records what a SOP cook writes; keeps the arrays for the test to read back."""

    def __init__(self):
        self.points = np.zeros((0, 3), np.float32)
        self.polygons: list[tuple[int, ...]] = []
        self.attribs: dict[tuple[str, str], object] = {}   # (attribType.value, name) -> default
        self.values: dict[tuple[str, str], object] = {}

    def createPoints(self, positions):  # noqa: N802
        _record("Geometry.createPoints", len(positions))
        self.points = np.asarray(positions, np.float32).reshape(-1, 3)

    def createPolygons(self, points, is_closed=True):  # noqa: N802
        _record("Geometry.createPolygons", len(points), is_closed=is_closed)
        self.polygons = [tuple(int(i) for i in p) for p in points]

    def addAttrib(self, attrib_type, name, default_value, *args, **kw):  # noqa: N802
        _record("Geometry.addAttrib", attrib_type, name, default_value)
        self.attribs[(attrib_type.value, name)] = default_value

    def _check(self, kind, name):
        if (kind, name) not in self.attribs:
            raise Error(f"no {kind} attribute {name}")

    def setVertexFloatAttribValuesFromString(self, name, data):  # noqa: N802
        self._check("vertex", name)
        size = len(self.attribs[("vertex", name)])
        values = np.frombuffer(data, np.float32).reshape(-1, size)
        if len(values) != sum(len(p) for p in self.polygons):
            raise Error(f"{name}: {len(values)} values for {sum(len(p) for p in self.polygons)} vertices")
        self.values[("vertex", name)] = values

    def setPointIntAttribValuesFromString(self, name, data):  # noqa: N802
        self._check("point", name)
        values = np.frombuffer(data, np.int32)
        if len(values) != len(self.points):
            raise Error(f"{name}: {len(values)} values for {len(self.points)} points")
        self.values[("point", name)] = values

    def setPrimStringAttribValues(self, name, values):  # noqa: N802
        self._check("prim", name)
        if len(values) != len(self.polygons):
            raise Error(f"{name}: {len(values)} values for {len(self.polygons)} prims")
        self.values[("prim", name)] = list(values)


class Node:
    """A node whose parameters come from a parsed DialogScript (``{name: (type, default)}``)."""

    def __init__(self, path, parm_specs: dict[str, tuple[str, str]], type_name: str = ""):
        self._path = path
        self._parms = {name: Parm(self, name, default, ptype) for name, (ptype, default) in parm_specs.items()}
        self._geometry = Geometry()
        self.stage = None
        self.type_name = type_name
        self.inputs: dict[int, "Node"] = {}
        self.display = False
        nodes[path] = self

    def createNode(self, type_name, node_name=None):  # noqa: N802
        _record("Node.createNode", self._path, type_name, node_name)
        table = {"/stage": "Lop", "/obj": "Obj"}.get(self._path, "Sop")
        key = f"{table}/{type_name}"
        if key not in node_types:
            raise OperationFailed(f"Invalid node type name: {type_name}")
        return Node(f"{self._path}/{node_name or type_name}", node_types[key], type_name)

    def setInput(self, index, node):  # noqa: N802
        _record("Node.setInput", self._path, index, node.path())
        self.inputs[index] = node

    def setDisplayFlag(self, on):  # noqa: N802
        self.display = bool(on)

    def path(self):
        return self._path

    def parm(self, name):
        return self._parms.get(name)

    def evalParm(self, name):  # noqa: N802
        return self._parms[name].eval()

    def geometry(self):
        return self._geometry

    def editableStage(self):  # noqa: N802
        _record("Node.editableStage", self._path)
        return self.stage

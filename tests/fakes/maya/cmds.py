"""Fake ``maya.cmds``: records every call in ``session.current``; UI controls keep their values for queries.

Unknown commands are recorded and return ``None``.
"""

from __future__ import annotations

from . import session as _session

UI_CONTROLS = ("window", "columnLayout", "rowLayout", "textFieldButtonGrp", "textFieldGrp", "optionMenuGrp",
               "intFieldGrp", "radioButtonGrp", "button", "shelfLayout", "shelfButton", "progressBar")
QUERY_FLAGS_IGNORED = {"q", "query", "e", "edit", "exists"}


def _s():
    return _session.current


def _control(command, /, *args, **kw):
    s = _s()
    s.record(command, args, kw)
    if kw.get("exists"):
        return bool(args) and args[0] in s.controls
    if kw.get("q") or kw.get("query"):
        name = args[0]
        if name not in s.controls:
            raise RuntimeError(f"{command}: object not found: {name}")
        flag = next(k for k, v in kw.items() if k not in QUERY_FLAGS_IGNORED and v)
        if command == "progressBar" and flag == "isCancelled":
            return s.cancel_pressed
        return s.controls[name].get(flag)
    if kw.get("e") or kw.get("edit"):
        name = args[0]
        if name not in s.controls:
            raise RuntimeError(f"{command}: object not found: {name}")
        s.controls[name].update({k: v for k, v in kw.items() if k not in QUERY_FLAGS_IGNORED})
        return name
    name = args[0] if args else f"{command}{s.next_id()}"
    values = dict(kw, _type=command)
    if command == "shelfLayout":
        values.setdefault("childArray", [])
    if command == "shelfButton" and kw.get("parent") in s.controls:
        s.controls[kw["parent"]]["childArray"].append(name)
    s.controls[name] = values
    if command == "optionMenuGrp":
        s._last_option_menu = name
    return name


def _make(command):
    def command_fn(*args, **kw):
        return _control(command, *args, **kw)

    command_fn.__name__ = command
    return command_fn


for _name in UI_CONTROLS:
    globals()[_name] = _make(_name)


def _main_progress_bar():
    from .mel import GLOBALS

    bar = GLOBALS["$gMainProgressBar"]
    if bar not in _s().controls:
        _s().controls[bar] = {"_type": "progressBar"}


def progressBar(*args, **kw):  # noqa: N802
    _main_progress_bar()
    return _control("progressBar", *args, **kw)


def menuItem(*args, **kw):  # noqa: N802
    s = _s()
    s.record("menuItem", args, kw)
    menu = s.controls.get(s._last_option_menu)
    if menu is not None:
        menu.setdefault("items", []).append(kw["label"])
        menu.setdefault("value", kw["label"])
    return f"menuItem{s.next_id()}"


def setParent(*args, **kw):  # noqa: N802
    _s().record("setParent", args, kw)


def showWindow(*args, **kw):  # noqa: N802
    _s().record("showWindow", args, kw)


def deleteUI(*args, **kw):  # noqa: N802
    s = _s()
    s.record("deleteUI", args, kw)
    for name in args:
        s.controls.pop(name, None)
        for control in s.controls.values():
            if name in control.get("childArray", []):
                control["childArray"].remove(name)


def optionVar(*args, **kw):  # noqa: N802
    s = _s()
    s.record("optionVar", args, kw)
    if "exists" in kw:
        return kw["exists"] in s.option_vars
    for flag in ("q", "query"):
        if flag in kw:
            return s.option_vars.get(kw[flag], 0)
    for flag in ("sv", "stringValue", "iv", "intValue", "fv", "floatValue"):
        if flag in kw:
            name, value = kw[flag]
            s.option_vars[name] = value
    if "remove" in kw:
        s.option_vars.pop(kw["remove"], None)


def scriptJob(*args, **kw):  # noqa: N802
    s = _s()
    s.record("scriptJob", args, kw)
    if "kill" in kw:
        s.script_jobs.pop(kw["kill"])
        return None
    job = s.next_id()
    s.script_jobs[job] = kw["idleEvent"]
    return job


def loadPlugin(*args, **kw):  # noqa: N802
    s = _s()
    s.record("loadPlugin", args, kw)
    s.plugins_loaded.add(args[0])
    return [args[0]]


def mayaUSDImport(*args, **kw):  # noqa: N802
    """Builds the Maya nodes maya-usd would (see fakes/maya/usd_import.py) from the real USD file."""
    from .usd_import import import_stage

    s = _s()
    s.record("mayaUSDImport", args, kw)
    if "mayaUsdPlugin" not in s.plugins_loaded:
        raise RuntimeError("mayaUSDImport: unknown command (plug-in not loaded)")
    refused = s.rejected_flags & set(kw)
    if refused:
        raise TypeError(f"Invalid flag '{sorted(refused)[0]}'")
    return import_stage(s, kw["file"], kw)


def _node_name(path_or_plug: str) -> str:
    return path_or_plug.split(".")[0]


def _matches(node: str, name: str) -> bool:
    """``name`` (short, partial or full DAG path, or plain dependency node name) is ``node``."""
    return node == name or node.endswith("|" + name.lstrip("|"))


def _find(name: str) -> str | None:
    nodes = _s().nodes
    if name in nodes:
        return name
    found = [n for n in nodes if _matches(n, name)]
    return found[0] if found else None


def listRelatives(*args, **kw):  # noqa: N802
    s = _s()
    s.record("listRelatives", args, kw)
    roots = args[0] if isinstance(args[0], (list, tuple)) else [args[0]]
    roots = [_find(r) or r for r in roots]
    out = []
    for name, node in s.nodes.items():
        if kw.get("type") and node["type"] != kw["type"]:
            continue
        if kw.get("shapes") and node["type"] not in ("mesh", "mayaUsdProxyShape"):
            continue
        if kw.get("noIntermediate") and node.get("intermediate"):
            continue
        parent = name.rsplit("|", 1)[0] if "|" in name else None
        if any((name.startswith(r + "|") if kw.get("allDescendents") else parent == r) for r in roots):
            out.append(name)
    return out or None


def listConnections(*args, **kw):  # noqa: N802
    s = _s()
    s.record("listConnections", args, kw)
    items = args[0] if isinstance(args[0], (list, tuple)) else [args[0]]
    want_source, want_destination = kw.get("source", True), kw.get("destination", True)
    out = []
    for item in items:
        item = item if "." in item else (_find(item) or item)
        for src, dst in s.connections:
            ends = []
            if want_source and (dst == item or _node_name(dst) == item):
                ends.append(src)
            if want_destination and (src == item or _node_name(src) == item):
                ends.append(dst)
            for end in ends:
                if kw.get("type") and s.nodes.get(_node_name(end), {}).get("type") != kw["type"]:
                    continue
                out.append(end if kw.get("plugs") else _node_name(end))
    return out or None


def listHistory(*args, **kw):  # noqa: N802
    """Upstream nodes of the given ones, breadth first through the connections."""
    s = _s()
    s.record("listHistory", args, kw)
    todo = list(args[0] if isinstance(args[0], (list, tuple)) else [args[0]])
    seen = []
    while todo:
        node = todo.pop(0)
        if node in seen:
            continue
        seen.append(node)
        todo += [_node_name(src) for src, dst in s.connections if _node_name(dst) == node]
    return seen


def ls(*args, **kw):
    s = _s()
    s.record("ls", args, kw)
    names = args[0] if args and isinstance(args[0], (list, tuple)) else list(args) or list(s.nodes)
    return [n for n in names if n in s.nodes and (not kw.get("type") or s.nodes[n]["type"] == kw["type"])]


def nodeType(name, **kw):  # noqa: N802
    _s().record("nodeType", (name,), kw)
    return _s().nodes[_find(name)]["type"]


def shadingNode(node_type, **kw):  # noqa: N802
    s = _s()
    s.record("shadingNode", (node_type,), kw)
    name = kw.get("name") or f"{node_type}{s.next_id()}"
    s.nodes[name] = {"type": node_type}
    return name


def disconnectAttr(src, dst, **kw):  # noqa: N802
    s = _s()
    s.record("disconnectAttr", (src, dst), kw)
    s.connections.remove((src, dst))


def getAttr(plug, **kw):  # noqa: N802
    _s().record("getAttr", (plug,), kw)
    return _s().attributes.get(plug)


def pluginInfo(*args, **kw):  # noqa: N802
    s = _s()
    s.record("pluginInfo", args, kw)
    if kw.get("version"):
        return s.maya_usd_version
    return args[0] in s.plugins_loaded


def playbackOptions(*args, **kw):  # noqa: N802
    s = _s()
    s.record("playbackOptions", args, kw)
    if kw.get("q") or kw.get("query"):
        (flag,) = [k for k, v in kw.items() if k not in ("q", "query") and v]
        return s.timeline[flag]
    s.timeline.update({k: v for k, v in kw.items() if k in s.timeline})


def currentTime(*args, **kw):  # noqa: N802
    s = _s()
    s.record("currentTime", args, kw)
    if kw.get("q") or kw.get("query"):
        return s.current_time
    s.current_time = args[0]


def polyUVSet(*args, **kw):  # noqa: N802
    s = _s()
    s.record("polyUVSet", args, kw)
    node = s.nodes[args[0]]
    if kw.get("q"):
        return list(node["uvSets"])
    if kw.get("rename"):
        node["uvSets"] = [kw["newUVSet"] if u == kw["uvSet"] else u for u in node["uvSets"]]


def createNode(node_type, **kw):  # noqa: N802
    s = _s()
    s.record("createNode", (node_type,), kw)
    name = kw.get("name") or f"{node_type}{s.next_id()}"
    s.nodes[name] = {"type": node_type, "parent": kw.get("parent")}
    return name


def setAttr(plug, *values, **kw):  # noqa: N802
    s = _s()
    s.record("setAttr", (plug,) + values, kw)
    if _node_name(plug) not in s.nodes and not any(_matches(n, _node_name(plug)) for n in s.nodes):
        raise RuntimeError(f"setAttr: No object matches name: {plug}")
    s.attributes[plug] = values[0] if len(values) == 1 else values


def connectAttr(src, dst, **kw):  # noqa: N802
    s = _s()
    s.record("connectAttr", (src, dst), kw)
    if kw.get("force"):
        s.connections = [(a, b) for a, b in s.connections if b != dst]
    s.connections.append((src, dst))


def fileDialog2(*args, **kw):  # noqa: N802
    _s().record("fileDialog2", args, kw)
    return _s().file_dialog_answer


def about(*args, **kw):
    _s().record("about", args, kw)
    return _s().batch if kw.get("batch") else ""


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)

    def unknown_command(*args, **kw):
        _s().record(name, args, kw)

    return unknown_command

+ TOPOS 0.1.0 .
PYTHONPATH+:=scripts
MAYA_SCRIPT_PATH+:=scripts

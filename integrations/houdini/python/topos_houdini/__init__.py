"""TOPOS for Houdini: the code behind the ``topos_head`` LOP and the ``topos_skin`` SOP (otls/topos_head.hda).

Thin: generation is ``topos_sdk.generate.generate_head``; the LOP references the asset layer it writes, the
SOP reads the layer's meshes with Houdini's own ``pxr``. No geometry code here.
"""

__version__ = "0.1.0"

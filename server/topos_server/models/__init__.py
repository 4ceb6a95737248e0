"""Networks only, one file each (diffusers ModelMixin/ConfigMixin, safetensors).

Committed checkpoints live in ``weights/`` (each with its exact training command in ``weights/README.md``).
"""

from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"

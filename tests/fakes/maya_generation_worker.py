"""Test stand-in for ``mayapy -m topos_maya.generation_process``: the real worker module, with
``generate_head`` replaced by :class:`fakes.head_assets.FakeGenerateHead` configured from
``$TOPOS_TEST_WORKER`` (JSON: seed, fail, steps, step_s, calls_file). Each call is appended to
``calls_file`` as JSON with the worker's pid and thread."""

import json
import os
import sys
import threading

from conftest import make_quad_grid
from fakes.head_assets import FakeGenerateHead, head_result
from topos_sdk.errors import InvalidInputError

config = json.loads(os.environ["TOPOS_TEST_WORKER"])
fake = FakeGenerateHead(head_result(make_quad_grid(), seed=config.get("seed", 1)),
                        fail=InvalidInputError(config["fail"]) if config.get("fail") else None,
                        steps=config.get("steps", 3), step_s=config.get("step_s", 0.0))


def recording_generate_head(image, out_dir, **kw):
    with open(config["calls_file"], "a") as f:
        f.write(json.dumps(dict(image=str(image), out_dir=str(out_dir), pid=os.getpid(),
                                thread=threading.current_thread().name,
                                **{k: v for k, v in kw.items() if k != "on_progress"})) + "\n")
    return fake(image, out_dir, **kw)


import topos_sdk.generate  # noqa: E402

topos_sdk.generate.generate_head = recording_generate_head
from topos_maya import generation_process  # noqa: E402

sys.exit(generation_process.main())

"""The checked-in Ray Serve config and ``topos serve --ray`` argument checks: no Ray cluster needed."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("ray.serve", reason="needs the ray extra: pip install 'topos[ray]'")

import yaml  # noqa: E402 (a Ray dependency)
from ray.serve.schema import ServeDeploySchema  # noqa: E402
from topos_server.serving import ray_app, ray_proxy_services  # noqa: E402

from topos_sdk.cli import main  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "ray-serve.yaml"


def test_the_serve_config_validates_and_builds_the_application():
    config = ServeDeploySchema.model_validate(yaml.safe_load(CONFIG.read_text()))
    assert config.grpc_options.grpc_servicer_functions == ray_proxy_services.SERVICER_FUNCTIONS
    (application,) = config.applications
    assert application.import_path == "topos_server.serving.ray_app:build_app"
    options = ray_app.RayServeOptions.from_args(application.args)
    assert options.autoscale == (1, 8) and options.engines == ["classic"]
    assert ray_app.build_app(application.args) is not None  # binds without a cluster


def test_proxy_services_import_and_messages_pickle():
    import pickle

    from topos_sdk._proto.v1 import topos_pb2 as pb

    for path in ray_proxy_services.SERVICER_FUNCTIONS:
        module, name = path.rsplit(".", 1)
        assert callable(getattr(__import__(module, fromlist=[name]), name))
    request = pb.GenerateRequest(encoded_image=b"\x89PNG", seed=7, request_id="r1")
    assert pickle.loads(pickle.dumps(request)) == request


@pytest.mark.parametrize("args, problem", [
    ({"autoscale": "3:1"}, "autoscale"),
    ({"autoscale": "many"}, "MIN:MAX"),
    ({"replicas": 0}, "replicas"),
    ({"device": "cuda:1"}, "device"),
    ({"engine": "classic"}, "unknown topos app argument"),
    ({"engines": ["dit"]}, "engines must name"),
    ({"max_ongoing": 0}, "max_ongoing"),
])
def test_bad_app_arguments_are_clear_errors(args, problem):
    with pytest.raises(ValueError, match=problem):
        ray_app.RayServeOptions.from_args(args)


@pytest.mark.parametrize("argv, problem", [
    (["serve", "--replicas", "2"], "go with --ray"),
    (["serve", "--ray", "--tls-cert", "c.pem", "--tls-key", "k.pem"], "do not apply with --ray"),
    (["serve", "--ray", "--host", "0.0.0.0"], "do not apply with --ray"),
    (["serve", "--ray", "--replicas", "2", "--autoscale", "1:3"], "exclude each other"),
    (["serve", "--ray", "--autoscale", "4:2"], "autoscale"),
])
def test_serve_ray_flags_are_checked_before_anything_starts(argv, problem, capsys):
    assert main(argv) != 0
    assert problem in capsys.readouterr().err

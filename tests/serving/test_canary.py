"""A canary next to stable: ``sluice serve --model-config-file F --traffic stable=90,canary=10`` splits the
predict requests that name no version or label by label weight, requests that name one go where they ask, a
canary that cannot serve gives its share to stable instead of errors, and ``sluice monitor`` compares the two
versions' prediction distributions from the logs."""

from __future__ import annotations

import argparse
import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from sluice.serving.errors import SettingError
from sluice.serving.repository import ModelEntry, Repository
from tests.serving.test_repository import _save

CONFIG = """model_config_list {{
  config {{
    name: "m"
    base_path: "{base}"
    model_platform: "tensorflow"
    model_version_policy {{ specific {{ versions: 1 versions: 2 }} }}
    version_labels {{ key: "stable" value: 1 }}
    version_labels {{ key: "canary" value: {canary} }}
  }}
}}
"""


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    root = tmp_path_factory.mktemp("canary") / "m"
    for version, scale in ((1, 1.0), (2, 2.0)):  # y = x * scale: the answer names the version
        _save(root / str(version), scale)
    return root


def _config(tmp_path: Path, base: Path, canary: int = 2) -> Path:
    path = tmp_path / "models.config"
    path.write_text(CONFIG.format(base=base, canary=canary))
    return path


def _args(**given):
    defaults = {"traffic": None, "model_config_file": None}
    return argparse.Namespace(**{**defaults, **given})


def test_split_draws_labels_by_weight_and_named_requests_go_where_they_ask(versions):
    repo = Repository([ModelEntry("m", versions, policy="all", labels={"stable": 1, "canary": 2})],
                      traffic={"stable": 90, "canary": 10})
    repo.refresh()
    assert repo.route("m", draw=0.0).version == 1 and repo.route("m", draw=0.899).version == 1
    assert repo.route("m", draw=0.9).version == 2 and repo.route("m", draw=0.999).version == 2
    assert repo.route("m", label="canary", draw=0.0).version == 2
    assert repo.route("m", version=1, draw=0.95).version == 1
    assert repo.resolve("m").version == 2, "metadata and status keep TF Serving's newest-version answer"
    drawn = [repo.route("m").version for _ in range(4000)]
    assert drawn.count(2) / len(drawn) == pytest.approx(0.10, abs=0.02)


def test_a_canary_that_cannot_serve_gives_its_share_to_stable(versions, tmp_path):
    # The canary label points at version 3, which is not there (a push still copying, or one that failed).
    repo = Repository([ModelEntry("m", versions, policy="all", labels={"stable": 1, "canary": 3})],
                      traffic={"stable": 50, "canary": 50})
    repo.refresh()
    assert {repo.route("m", draw=d).version for d in (0.1, 0.6, 0.99)} == {1}
    with pytest.raises(Exception, match="Specific"):  # asked by name, the canary still answers as TF Serving does
        repo.route("m", label="canary")


def test_traffic_flags_that_cannot_work_are_refused_by_name(versions, tmp_path):
    from sluice.serving.server import LocalServer, traffic_split

    config = str(_config(tmp_path, versions))
    assert traffic_split(_args(traffic="stable=90, canary=10", model_config_file=config)) == \
        {"stable": 90.0, "canary": 10.0}
    assert traffic_split(_args()) is None
    for traffic, problem in (("stable=90,canary=x", "'canary=x'"), ("stable=90", "two labels"),
                             ("stable=0,canary=0", "above 0"), ("stable=-1,canary=2", "'stable=-1'"),
                             ("stable=1,stable=2", "'stable=2'"), ("stable=nan,canary=1", "'stable=nan'")):
        with pytest.raises(SettingError, match=problem):
            traffic_split(_args(traffic=traffic, model_config_file=config))
    with pytest.raises(SettingError, match="models.config"):
        traffic_split(_args(traffic="stable=1,canary=1"))
    with pytest.raises(SettingError, match="no model has every label"):
        LocalServer(versions.parent, rest_port=0, grpc_port=0, model_config_file=Path(config),
                    traffic={"stable": 1, "blue": 1})


def test_a_served_split_is_logged_per_version_and_monitor_compares_the_two(versions, tmp_path):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from sluice.pipeline import monitor
    from sluice.serving.request_log import RequestLogger
    from sluice.serving.server import LocalServer

    logs = tmp_path / "logs"
    server = LocalServer(versions.parent, rest_port=0, grpc_port=0, model_config_file=_config(tmp_path, versions),
                         logger=RequestLogger(str(logs)), traffic={"stable": 70, "canary": 30}).start()
    answers = []
    rng = np.random.default_rng(0)
    try:
        url = f"http://127.0.0.1:{server.rest_port}/v1/models/m:predict"
        for x in rng.uniform(1.0, 2.0, 300).astype(np.float32):
            body = json.dumps({"instances": [float(x)]}).encode()
            with urllib.request.urlopen(urllib.request.Request(url, body), timeout=30) as response:
                answers.append(json.loads(response.read())["predictions"][0] / float(x))
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
        grpc_versions = []
        for label in ("", "", "canary", "stable"):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "m"
            if label:
                request.model_spec.version_label = label
            request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
            grpc_versions.append(stub.Predict(request, timeout=30).model_spec.version.value)
    finally:
        server.stop()
    answers = [round(a, 3) for a in answers]  # y / x: the version's scale
    assert set(answers) == {1.0, 2.0} and answers.count(2.0) / len(answers) == pytest.approx(0.3, abs=0.08)
    assert grpc_versions[2:] == [2, 1]
    served, _ = monitor.read_served(str(logs), "m", ["x"])
    assert set(served) == {1, 2}
    assert served[2].rows == answers.count(2.0) + (grpc_versions.count(2))
    gate = _gate()
    (between,) = monitor.compare_versions(gate, served)
    assert (between["older"], between["newer"]) == (1, 2)
    assert between["shifted"], "the canary answers 2.0 where stable answers 1.0"


def _gate():
    from sluice.components.contracts import GateContract
    from sluice.components.settings import ValidationConfig

    return GateContract(validation=ValidationConfig(), columns={})


def test_versions_that_answer_alike_are_not_flagged():
    from sluice.pipeline import monitor

    rng = np.random.default_rng(1)
    served = {}
    for version, mean in ((1, 10.0), (2, 10.0), (3, 16.0)):
        served[version] = monitor.Served(version)
        served[version].add([b""] * 800, list(rng.normal(mean, 2, 800)))
    served[4] = monitor.Served(4)
    served[4].add([b""], [])
    rows = {(r["older"], r["newer"]): r for r in monitor.compare_versions(_gate(), served)}
    assert not rows[(1, 2)]["shifted"] and rows[(1, 2)]["value"] < 0.05
    assert rows[(2, 3)]["shifted"]
    assert not rows[(3, 4)]["shifted"] and rows[(3, 4)]["note"]

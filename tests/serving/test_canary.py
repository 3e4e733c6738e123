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


def test_a_canary_that_cannot_serve_gives_its_share_to_stable_never_the_reverse(versions, caplog):
    from sluice.serving.errors import ServingError

    # The canary label points at version 3, which is not there (a push still copying, or one that failed).
    repo = Repository([ModelEntry("m", versions, policy="all", labels={"stable": 1, "canary": 3})],
                      traffic={"stable": 80, "canary": 20})
    repo.refresh()
    assert {repo.route("m", draw=d).version for d in (0.1, 0.79, 0.8, 0.99)} == {1}
    assert "label canary points at version 3, which is not loaded; its share goes to stable" in caplog.text
    with pytest.raises(ServingError, match="Specific"):  # asked by name, the canary still answers as TF Serving does
        repo.route("m", label="canary")
    # Stable's version gone (a policy that dropped it): its share is refused, not promoted to the canary.
    repo = Repository([ModelEntry("m", versions, policy="all", labels={"stable": 7, "canary": 2})],
                      traffic={"stable": 80, "canary": 20})
    repo.refresh()
    assert repo.route("m", draw=0.9).version == 2
    with pytest.raises(ServingError, match="label stable of m points at version 7") as refused:
        repo.route("m", draw=0.1)
    assert refused.value.code == "UNAVAILABLE"
    # Equal weights: the label listed first stands in for the other, not the reverse.
    for labels, draws in (({"stable": 1, "canary": 3}, {0.2: 1, 0.7: 1}), ({"stable": 3, "canary": 2}, {0.7: 2})):
        repo = Repository([ModelEntry("m", versions, policy="all", labels=labels)], traffic={"stable": 1, "canary": 1})
        repo.refresh()
        assert {d: repo.route("m", draw=d).version for d in draws} == draws
    with pytest.raises(ServingError, match="label stable"):
        repo.route("m", draw=0.2)


def test_traffic_flags_that_cannot_work_are_refused_by_name(versions, tmp_path):
    from sluice.serving.server import LocalServer, traffic_split

    config = str(_config(tmp_path, versions))
    assert traffic_split(_args(traffic="stable=90, canary=10", model_config_file=config)) == \
        pytest.approx({"stable": 0.9, "canary": 0.1})
    assert traffic_split(_args(traffic="stable=1e308,canary=1e308", model_config_file=config)) == \
        pytest.approx({"stable": 0.5, "canary": 0.5}), "shares, not an overflowing total"
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
                         logger=RequestLogger(str(logs)), traffic={"stable": 50, "canary": 50}).start()
    answers = []
    rng = np.random.default_rng(0)
    try:
        url = f"http://127.0.0.1:{server.rest_port}/v1/models/m:predict"
        for x in rng.uniform(1.0, 2.0, 400).astype(np.float32):
            body = json.dumps({"instances": [float(x)]}).encode()
            with urllib.request.urlopen(urllib.request.Request(url, body), timeout=30) as response:
                answers.append(json.loads(response.read())["predictions"][0] / float(x))
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
        grpc_versions = []
        for label in [""] * 40 + ["canary", "stable"]:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "m"
            if label:
                request.model_spec.version_label = label
            request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([1.0], np.float32)))
            grpc_versions.append(stub.Predict(request, timeout=30).model_spec.version.value)
    finally:
        server.stop()
    answers = [round(a, 3) for a in answers]  # y / x: the version's scale
    assert set(answers) == {1.0, 2.0} and answers.count(2.0) / len(answers) == pytest.approx(0.5, abs=0.1)
    assert grpc_versions[-2:] == [2, 1] and set(grpc_versions[:-2]) == {1, 2}, "gRPC requests are split too"
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


def _served(version, predictions, first=1000.0, last=1010.0):
    """Predictions logged evenly from ``first`` to ``last`` (seconds since the epoch)."""
    from sluice.pipeline import monitor

    served = monitor.Served(version)
    for i, p in enumerate(predictions):  # as monitor.predictions gives them: floats
        served.add([b""], [float(p)], first + (last - first) * i / max(1, len(predictions) - 1))
    served.first, served.last = first, last
    return served


def test_versions_served_together_are_compared_and_only_they():
    from sluice.pipeline import monitor

    rng = np.random.default_rng(1)
    served = {1: _served(1, rng.normal(10, 2, 800)), 2: _served(2, rng.normal(10, 2, 800)),
              3: _served(3, rng.normal(16, 2, 800)), 4: _served(4, []),
              5: _served(5, rng.normal(10, 2, 800), first=1011.0, last=1020.0),  # after the others
              6: _served(6, rng.normal(30, 2, 800), first=0.0, last=0.0)}  # logs without timestamps
    rows = {(r["older"], r["newer"]): r for r in monitor.compare_versions(_gate(), served)}
    assert set(rows) == {(1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4)}
    assert not rows[(1, 2)]["shifted"] and rows[(1, 2)]["value"] < 0.05
    assert rows[(2, 3)]["shifted"] and rows[(1, 3)]["shifted"]
    assert not rows[(3, 4)]["shifted"] and rows[(3, 4)]["note"]


def test_version_comparisons_are_not_blind_to_constants_nor_fooled_by_few_rows():
    from sluice.pipeline import monitor

    rng = np.random.default_rng(2)
    constant = {1: _served(1, [5.0] * 300), 2: _served(2, [10.0] * 300)}
    (row,) = monitor.compare_versions(_gate(), constant)
    assert row["shifted"] and row["measure"].startswith("L_INFINITY"), row
    coins = {1: _served(1, [0.0, 1.0] * 150), 2: _served(2, [1.0] * 300)}
    assert monitor.compare_versions(_gate(), coins)[0]["shifted"]
    spread = {1: _served(1, [5.0] * 300), 2: _served(2, rng.normal(100, 5, 300))}
    assert monitor.compare_versions(_gate(), spread)[0]["shifted"], "a constant baseline has no deciles to hide in"
    few = {1: _served(1, rng.normal(10, 2, 2000)), 2: _served(2, rng.normal(10, 2, 10))}
    (row,) = monitor.compare_versions(_gate(), few)
    assert not row["shifted"] and "too few predictions" in row["note"]
    # A hot-swap push: v1 served for hours, v2 after it, one second shared. Only that second is compared, and
    # the few rows in it give no verdict (v2 answering differently is the retrain, not a canary).
    swap = {1: _served(1, rng.normal(10, 2, 5000), first=0.5e6, last=1e6), 2: _served(2, rng.normal(16, 2, 5000),
                                                                                    first=1e6, last=1.5e6)}
    (row,) = monitor.compare_versions(_gate(), swap)
    assert row["window"] == [1e6, 1e6] and not row["shifted"] and "too few" in row["note"], row


def test_serve_refuses_a_split_to_a_version_that_did_not_load(versions, tmp_path):
    """TF Serving refuses a label on a version it has not loaded; a split to it would be no split."""
    from sluice.serving.server import add_arguments, serve

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = _config(tmp_path, versions, canary=3)  # version 3 is not there
    args = parser.parse_args(["--model-dir", str(versions.parent), "--model-config-file", str(config),
                              "--rest-port", "0", "--grpc-port", "0", "--traffic", "stable=90,canary=10"])
    with pytest.raises(SettingError, match=r"canary \(version 3\) point at versions that did not load"):
        serve(args)

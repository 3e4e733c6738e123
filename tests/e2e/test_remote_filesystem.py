"""Every custom executor on a filesystem that is not local disk.

On Kubeflow/Vertex every artifact URI is ``gs://``. TF's GCS filesystem cannot be faked here, but ``ram://``
(TF's in-memory filesystem) goes through the same ``fileio`` / ``tf.io.gfile`` calls and is invisible to
builtin ``open``/``os``/``shutil``/``glob`` — and to every other process. Each test copies the real input
artifacts of the session's fare pipeline (conftest.py) to ``ram://``, runs the executor with every URI
there, and compares what it wrote with what the same executor wrote on local disk in the pipeline run.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Dict, List

import pytest

from sluice.components.contracts import InfraCheckContract, PushContract

pytestmark = pytest.mark.e2e


# ------------------------------------------------------------------------------------------------ helpers
def _artifact(out: Path, component: str, key: str):
    """The newest artifact ``component`` wrote under ``key`` in the run directory, as a TFX Artifact with all
    its MLMD properties (split names, blessed, passed, fingerprints …)."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2
    from tfx.types import artifact_utils, standard_artifacts  # noqa: F401  (registers the artifact classes)

    import sluice.components.data_gate  # noqa: F401
    import sluice.components.export.component  # noqa: F401

    directory = max((out / "pipeline_root" / component / key).iterdir(), key=lambda p: int(p.name))
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(out / "metadata.sqlite")
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(config)
    [mlmd] = store.get_artifacts_by_uri(str(directory))
    [artifact_type] = store.get_artifact_types_by_id([mlmd.type_id])
    return artifact_utils.deserialize_artifact(artifact_type, mlmd)


def _on_ram(artifact, root: str):
    """A copy of ``artifact`` (files and properties) whose URI is under ``root`` (a ram:// folder)."""
    from ml_metadata.proto import metadata_store_pb2
    from tfx.types import artifact_utils
    from tfx.utils import io_utils

    proto = metadata_store_pb2.Artifact()
    proto.CopyFrom(artifact.mlmd_artifact)
    clone = artifact_utils.deserialize_artifact(artifact.artifact_type, proto)
    clone.uri = f"{root}/{Path(artifact.uri).parent.name}/{Path(artifact.uri).name}"
    io_utils.copy_dir(artifact.uri, clone.uri)
    return clone


def _empty(artifact_class, uri: str):
    artifact = artifact_class()
    artifact.uri = uri
    return artifact


def _files(root: str) -> List[str]:
    from sluice.components import artifact_io

    return artifact_io.files_under(root)


def _json(uri: str) -> Dict:
    from sluice.components import artifact_io

    return artifact_io.read_json(uri)


@pytest.fixture()
def ram() -> str:
    root = f"ram://sluice-test-{uuid.uuid4().hex[:8]}"
    yield root


def test_ram_filesystem_is_invisible_to_builtin_io(ram):
    """The premise: a builtin-I/O slip on a ram:// URI fails (as it would on gs://) instead of passing."""
    import os

    from sluice.components import artifact_io

    artifact_io.write_text(f"{ram}/probe.txt", "x")
    assert artifact_io.read_text(f"{ram}/probe.txt") == "x"
    assert not os.path.exists(f"{ram}/probe.txt")
    with pytest.raises(OSError):
        open(f"{ram}/probe.txt").read()


# ---------------------------------------------------------------------------------------------- DataGate
def _gate_inputs(fare, ram):
    return {
        "statistics": [_on_ram(_artifact(fare["out"], "StatisticsGen", "statistics"), ram)],
        "anomalies": [_on_ram(_artifact(fare["out"], "ExampleValidator", "anomalies"), ram)],
        "schema": [_on_ram(_artifact(fare["out"], "ImportSchemaGen", "schema"), ram)],
        "baseline": [_on_ram(_artifact(fare["out"], "DataGate", "verdict"), ram)],
    }


def test_data_gate_on_ram_gives_the_local_verdict(fare, ram):
    from sluice.components.data_gate import BASELINE_STATS, REPORT_FILE, VERDICT_FILE, DataVerdict, Executor
    from sluice.pipeline.config import load_config

    config = load_config(Path(fare["out"]).parent / "taxi_fare.yaml")
    local = _artifact(fare["out"], "DataGate", "verdict")
    verdict = _empty(DataVerdict, f"{ram}/DataGate/verdict/9")
    Executor().Do(_gate_inputs(fare, ram), {"verdict": [verdict]},
                  {"gate": config.gate_contract().to_json(), "report_root": f"{ram}/_data_reports"})

    assert _files(verdict.uri) == sorted([VERDICT_FILE, REPORT_FILE, BASELINE_STATS]) == _files(local.uri)
    got, want = _json(f"{verdict.uri}/{VERDICT_FILE}"), _json(f"{local.uri}/{VERDICT_FILE}")
    assert got["passed"] is want["passed"] is True
    assert got["findings"] == want["findings"]
    # Skew as locally, and drift against the baseline verdict (read from ram://) on every compared column.
    def skew_of(verdict):
        return {(d["feature"], d["measure"]): d["value"] for d in verdict["distances"] if d["comparison"] == "skew"}

    assert skew_of(got) and skew_of(got) == pytest.approx(skew_of(want), rel=1e-9)
    skew = sorted(feature for feature, _ in skew_of(got))
    assert sorted(d["feature"] for d in got["distances"] if d["comparison"] == "drift") == skew
    assert got["report"] == f"{ram}/_data_reports/9/{REPORT_FILE}" and _files(f"{ram}/_data_reports/9")
    assert verdict.get_int_custom_property("passed") == 1


def test_data_gate_on_ram_that_fails_leaves_its_report_where_it_survives(fare, ram):
    from sluice.components.data_gate import REPORT_FILE, VERDICT_FILE, DataGateFailed, DataVerdict, Executor
    from sluice.pipeline.config import load_config

    from sluice.components.settings import Comparator

    gate = load_config(Path(fare["out"]).parent / "taxi_fare.yaml").gate_contract()
    strict = Comparator(categorical_linf=1e-6, numeric_jsd=1e-6)  # any difference is too much
    gate = gate.model_copy(update={"validation": gate.validation.model_copy(update={"skew": strict})})
    verdict = _empty(DataVerdict, f"{ram}/DataGate/verdict/10")
    with pytest.raises(DataGateFailed):
        Executor().Do(_gate_inputs(fare, ram), {"verdict": [verdict]},
                      {"gate": gate.to_json(), "report_root": f"{ram}/_data_reports"})
    assert _files(f"{ram}/_data_reports/10") == sorted([REPORT_FILE, VERDICT_FILE])
    assert _json(f"{ram}/_data_reports/10/{VERDICT_FILE}")["passed"] is False


# ------------------------------------------------------------------------------------ Evaluator extension
def test_evaluator_extension_on_ram_reblesses_like_the_local_run(fare, ram):
    from tfx.components.evaluator import constants

    from sluice.components.evaluation import GATE_FILE
    from sluice.components.evaluator import rebless
    from sluice.pipeline.config import load_config

    config = load_config(Path(fare["out"]).parent / "taxi_fare.yaml")
    evaluation = _artifact(fare["out"], "Evaluator", "evaluation")
    blessing = _artifact(fare["out"], "Evaluator", "blessing")
    remote_eval, remote_blessing = _on_ram(evaluation, ram), _on_ram(blessing, ram)
    local = _json(f"{evaluation.uri}/{GATE_FILE}")
    verdict = rebless({"evaluation": [remote_eval], "blessing": [remote_blessing]}, config.evaluation.min_slice_size,
                      baseline_is_candidate=local["baseline_is_candidate"])  # what the executor saw in the run

    assert verdict == _json(f"{evaluation.uri}/{GATE_FILE}") == _json(f"{remote_eval.uri}/{GATE_FILE}")
    assert _files(remote_blessing.uri) == _files(blessing.uri) == [constants.BLESSED_FILE_NAME]
    assert remote_blessing.get_int_custom_property("blessed") == blessing.get_int_custom_property("blessed") == 1


# ------------------------------------------------------------------------------------------- ModelExport
def test_model_export_on_ram_writes_what_the_local_run_wrote(fare, ram):
    from sluice.components.export import component
    from sluice.pipeline.config import load_config

    contract = load_config(Path(fare["out"]).parent / "taxi_fare.yaml").export_contract()
    local = _artifact(fare["out"], "ModelExport", "exported")
    exported = _empty(component.ExportedModel, f"{ram}/ModelExport/exported/9")
    inputs = {"model": [_on_ram(_artifact(fare["out"], "Trainer", "model"), ram)],
              "transform_graph": [_on_ram(_artifact(fare["out"], "Transform", "transform_graph"), ram)],
              "examples": [_on_ram(_artifact(fare["out"], "CsvExampleGen", "examples"), ram)]}
    component.Executor().Do(inputs, {"exported": [exported]}, {"export": contract.to_json()})

    assert _files(exported.uri) == _files(local.uri)
    got, want = component.read_parity(exported.uri), component.read_parity(local.uri)
    assert got["passed"] is want["passed"] is True and exported.get_int_custom_property("passed") == 1
    assert got["rows"] == want["rows"] and got["data_fingerprint"] == want["data_fingerprint"]
    assert got["shipped"] == want["shipped"] and got["dropped"] == want["dropped"]  # the same verdict per variant
    for mine, theirs in zip(got["variants"], want["variants"]):
        assert mine["variant"] == theirs["variant"] and mine["passed"] == theirs["passed"]
        assert mine["metric_tflite"] == pytest.approx(theirs["metric_tflite"], rel=1e-6)
    from sluice.components.export import warmup

    requests = warmup.read(f"{exported.uri}/{component.WARMUP_PATH}")
    assert requests and requests == warmup.read(f"{local.uri}/{component.WARMUP_PATH}")


# -------------------------------------------------------------------------------------------- InfraCheck
def test_infra_check_on_ram_serves_a_local_copy_and_blesses(fare, ram):
    from tfx.types import standard_artifacts

    from sluice.components import infra_check

    local = _artifact(fare["out"], "InfraCheck", "blessing")
    blessing = _empty(standard_artifacts.InfraBlessing, f"{ram}/InfraCheck/blessing/9")
    inputs = {"model": [_on_ram(_artifact(fare["out"], "Trainer", "model"), ram)],
              "export": [_on_ram(_artifact(fare["out"], "ModelExport", "exported"), ram)]}
    infra_check.Executor().Do(inputs, {"blessing": [blessing]}, {"contract": InfraCheckContract(model_name="taxi_fare").to_json()})

    got, want = infra_check.read_report(blessing.uri), infra_check.read_report(local.uri)
    assert got["blessed"] is True, got["failures"]
    assert got["checked"] == want["checked"] and got["requests"] == want["requests"]
    assert blessing.get_int_custom_property("blessed") == 1
    assert _files(blessing.uri) == _files(local.uri) == sorted([infra_check.REPORT_FILE, "server.log"])


# ------------------------------------------------------------------------------------------------ Pusher
def _push(fare, ram, base: str, export=None):
    from tfx.proto import pusher_pb2
    from tfx.types import standard_artifacts
    from tfx.utils import proto_utils

    from sluice.components import pusher

    inputs = {"model": [_on_ram(_artifact(fare["out"], "Trainer", "model"), ram)],
              "model_blessing": [_on_ram(_artifact(fare["out"], "Evaluator", "blessing"), ram)],
              "infra_blessing": [_on_ram(_artifact(fare["out"], "InfraCheck", "blessing"), ram)],
              "export": [export or _on_ram(_artifact(fare["out"], "ModelExport", "exported"), ram)],
              "evaluation": [_on_ram(_artifact(fare["out"], "Evaluator", "evaluation"), ram)]}
    pushed = _empty(standard_artifacts.PushedModel, f"{ram}/Pusher/pushed_model/{uuid.uuid4().hex[:6]}")
    destination = pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=base))
    pusher.Executor().Do(inputs, {"pushed_model": [pushed]},
                         {"push_destination": proto_utils.proto_to_json(destination),
                          "custom_config": PushContract(pipeline="taxi_fare").to_json()})
    return inputs, pushed


def test_pusher_on_ram_pushes_the_whole_bundle_once(fare, ram):
    from sluice.components import artifact_io
    from sluice.components.pusher import PUSH_RECORD

    local = Path(fare["runs"][0]["saved_model_path"])
    base = f"{ram}/serving/taxi_fare"
    inputs, pushed = _push(fare, ram, base)
    assert pushed.get_int_custom_property("pushed") == 1
    version = pushed.get_string_custom_property("pushed_version")
    assert pushed.get_string_custom_property("pushed_destination") == f"{base}/{version}"

    files = _files(f"{base}/{version}")
    local_files = sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file())
    assert files == local_files
    assert {"saved_model.pb", "assets.extra/tf_serving_warmup_requests", PUSH_RECORD} <= set(files)
    record = artifact_io.read_json(f"{base}/{version}/{PUSH_RECORD}")
    assert record["model_uri"] == inputs["model"][0].uri and record["pipeline"] == "taxi_fare"
    assert set(record["tflite_parity"]) == {"float32", "dynamic_range", "int8"} and record["metrics"]
    local_tflite = local.parent.parent / "taxi_fare_tflite" / local.name
    assert _files(f"{base}_tflite/{version}") == sorted(p.name for p in local_tflite.iterdir())
    assert (artifact_io.read_bytes(f"{base}_tflite/{version}/model.tflite")
            == (local_tflite / "model.tflite").read_bytes())

    # The same model again: found by its push record, not pushed twice.
    from tfx.dsl.io import fileio

    _, again = _push(fare, ram, base, export=inputs["export"][0])
    assert again.get_string_custom_property("pushed_version") == version
    assert sorted(n.rstrip("/") for n in fileio.listdir(base) if n.rstrip("/").isdigit()) == [version]


def test_remote_push_writes_saved_model_pb_then_the_record_last(ram, monkeypatch, tmp_path):
    """Without an atomic rename, the copy order is the protocol: everything a SavedModel refers to, then
    saved_model.pb (what TF Serving needs to load a version), then the push record (what sluice trusts)."""
    from sluice.components import artifact_io, pusher

    model = tmp_path / "model"
    (model / "variables").mkdir(parents=True)
    for name in ("saved_model.pb", "fingerprint.pb", "variables/variables.index", "variables/variables.data-00000-of-00001"):
        (model / name).write_bytes(name.encode())
    written: List[str] = []
    copy = artifact_io.copy_file
    monkeypatch.setattr(artifact_io, "copy_file", lambda src, dst: (written.append(dst), copy(src, dst)))
    version = pusher.push_atomically(str(model), f"{ram}/serving/m", "uri://m/1", version="5")
    remote = [w.removeprefix(f"{ram}/serving/m/5/") for w in written if w.startswith(f"{ram}/serving/m/5/")]
    assert version == "5" and remote[-2:] == ["saved_model.pb", pusher.PUSH_RECORD]
    assert sorted(remote) == _files(f"{ram}/serving/m/5")
    assert pusher.existing_version_of(f"{ram}/serving/m", "uri://m/1") == "5"
    assert pusher.next_version(f"{ram}/serving/m", now=1) == "6"

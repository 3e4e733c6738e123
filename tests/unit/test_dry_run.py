"""The compiled pipeline's resolver queries and the dry run's emulation of what Vertex provides (no TFX run)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from sluice.pipeline import dry_run, kfp_spec
from sluice.pipeline.errors import SluiceError
from tests.helpers import CONFIGS, ROOT

ROOT_URI = "gs://bucket/sluice/taxi-fare"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    from sluice.pipeline.config import parse_config
    from sluice.pipeline.kubeflow import compile_kubeflow

    raw = yaml.safe_load((CONFIGS / "taxi_fare.yaml").read_text())
    cfg = parse_config(raw, base_dir=str(CONFIGS))
    out = compile_kubeflow(cfg, "img:1", ROOT_URI, tmp_path_factory.mktemp("kfp") / "p.json")
    return json.loads(out.read_text())


def test_the_drift_baseline_resolver_asks_for_the_gates_verdict_type(compiled):
    """TFX compiles custom types' queries as tfx.Artifact, which never matches on Vertex: sluice names the type,
    the same title the DataGate's output is registered under."""
    queries = {(task, key): (query, kind) for task, key, query, kind in kfp_spec.resolver_queries(compiled)}
    query, kind = queries[("LastPassedDataResolver", "verdict")]
    assert query["filter"] == 'schema_title="sluice.DataVerdict" AND state=LIVE'
    gate = compiled["pipelineSpec"]["components"]["DataGate"]["outputDefinitions"]["artifacts"]["verdict"]
    assert kfp_spec.artifact_title(gate["artifactType"]) == kfp_spec.artifact_title(kind) == "sluice.DataVerdict"
    assert 'schema_title="tfx.Artifact"' not in json.dumps(compiled)
    # TFX's own types are left as compiled.
    assert kfp_spec.queried_title(queries[("LatestBlessedModelResolver-model-resolver", "model")][0]) == "tfx.Model"


def test_tasks_run_after_every_task_they_read_from(compiled):
    order = kfp_spec.topological_order(compiled)
    graph = kfp_spec.tasks(compiled)
    assert sorted(order) == sorted(graph)
    for name in order:
        assert all(order.index(up) < order.index(name) for up in kfp_spec.upstream(graph[name])), name
    # The model resolver has no dependentTasks, only an input from the blessing resolver: still after it.
    assert order.index("LatestBlessedModelResolver-model-blessing-resolver") < order.index(
        "LatestBlessedModelResolver-model-resolver")


def test_localize_maps_the_root_and_image_files_and_replaces_the_data(compiled, tmp_path):
    local = dry_run.localize(compiled, tmp_path / "root", "/data/here", "part-*.csv")
    text = json.dumps(local)
    assert ROOT_URI not in text and str(tmp_path / "root") in text
    params = kfp_spec.tasks(local)["ImportSchemaGen"]["inputs"]["parameters"]["schema_file"]
    assert params["runtimeValue"]["constantValue"]["stringValue"] == str(ROOT / "schemas" / "taxi" / "schema.pbtxt")
    gen = kfp_spec.tasks(local)["CsvExampleGen"]["inputs"]["parameters"]
    assert gen["input_base"]["runtimeValue"]["constantValue"]["stringValue"] == "/data/here"
    assert "part-*.csv" in gen["input_config"]["runtimeValue"]["constantValue"]["stringValue"]
    assert compiled["runtimeConfig"]["gcsOutputDirectory"] == ROOT_URI  # the compiled spec is untouched


def test_an_image_file_the_dockerfile_does_not_copy_is_an_error(compiled, tmp_path):
    broken = copy.deepcopy(compiled)
    params = kfp_spec.tasks(broken)["ImportSchemaGen"]["inputs"]["parameters"]["schema_file"]
    params["runtimeValue"]["constantValue"]["stringValue"] = "/sluice/notcopied/schema.pbtxt"
    with pytest.raises(SluiceError, match="notcopied.*does not copy it"):
        dry_run.localize(broken, tmp_path, None, None)


def test_image_layout_is_what_the_dockerfile_copies_under_the_workdir(tmp_path):
    assert dry_run.image_layout(ROOT / "Dockerfile") == ["configs", "data", "schemas"]
    other = tmp_path / "Dockerfile"
    other.write_text("FROM x\nCOPY a.txt b.txt /src/\nWORKDIR /sluice\nCOPY pyproject.toml README.md ./\n"
                     "COPY schemas/ schemas/\nCOPY --from=build /out /sluice/out\nWORKDIR sub\nCOPY c/ c/\n")
    assert dry_run.image_copies(other) == ["/src/a.txt", "/src/b.txt", "/sluice/pyproject.toml",
                                           "/sluice/README.md", "/sluice/schemas", "/sluice/sub/c"]
    assert dry_run.image_layout(other) == ["README.md", "pyproject.toml", "schemas", "sub/c"]


def test_localize_maps_the_root_only_as_a_whole_path_prefix(compiled, tmp_path):
    body = copy.deepcopy(compiled)
    params = kfp_spec.tasks(body)["DataGate"]["inputs"]["parameters"]["report_root"]["runtimeValue"]["constantValue"]
    params["stringValue"] = ROOT_URI + "-elsewhere/reports"
    with pytest.raises(SluiceError, match="taxi-fare-elsewhere/reports.*cannot reach"):
        dry_run.localize(body, tmp_path / "root", None, None)


def test_localize_refuses_storage_uris_it_cannot_reach_before_running_anything(compiled, tmp_path):
    body = copy.deepcopy(compiled)
    params = kfp_spec.tasks(body)["ImportSchemaGen"]["inputs"]["parameters"]["schema_file"]["runtimeValue"]
    params["constantValue"]["stringValue"] = "gs://other/schema.pbtxt"
    with pytest.raises(SluiceError, match="ImportSchemaGen.*gs://other/schema.pbtxt"):
        dry_run.localize(body, tmp_path / "root", None, None)
    # The compiled data (gs://) without --dry-run-data is refused the same way.
    from sluice.pipeline.config import parse_config
    from sluice.pipeline.kubeflow import compile_kubeflow

    cfg = parse_config(yaml.safe_load((CONFIGS / "taxi_fare.yaml").read_text()), base_dir=str(CONFIGS))
    remote_data = json.loads(compile_kubeflow(cfg, "img:1", ROOT_URI, tmp_path / "p.json", data="gs://b/d/").read_text())
    with pytest.raises(SluiceError, match="CsvExampleGen.*gs://b/d"):
        dry_run.localize(remote_data, tmp_path / "root", None, None)
    dry_run.localize(remote_data, tmp_path / "root", "/data", "*.csv")  # with local data it runs


def test_a_dry_run_directory_under_the_image_root_is_not_rewritten(compiled):
    local = dry_run.localize(compiled, Path("/sluice/dry/pipeline_root"), None, None)
    push = kfp_spec.tasks(local)["Pusher"]["inputs"]["parameters"]["push_destination"]
    assert "/sluice/dry/pipeline_root/serving/taxi_fare" in push["runtimeValue"]["constantValue"]["stringValue"]


def test_image_files_come_from_the_project_that_has_them(compiled, tmp_path):
    project = tmp_path / "project"
    (project / "schemas" / "taxi").mkdir(parents=True)
    (project / "schemas" / "taxi" / "schema.pbtxt").write_text("feature {}")
    (project / "Dockerfile").write_text("FROM x\nWORKDIR /sluice\nCOPY schemas/ schemas/\nCOPY data/ data/\n")
    local = dry_run.localize(compiled, tmp_path / "root", None, None, roots=[project, ROOT])
    schema = kfp_spec.tasks(local)["ImportSchemaGen"]["inputs"]["parameters"]["schema_file"]
    assert schema["runtimeValue"]["constantValue"]["stringValue"] == str(project / "schemas/taxi/schema.pbtxt")
    with pytest.raises(SluiceError, match="no Dockerfile"):
        dry_run.localize(compiled, tmp_path / "root", None, None, roots=[tmp_path / "nowhere"])


def test_only_the_spec_version_tfx_writes_is_run(compiled, tmp_path):
    body = copy.deepcopy(compiled)
    body["pipelineSpec"]["schemaVersion"] = "2.1.0"
    with pytest.raises(SluiceError, match="2.1.0"):
        dry_run.localize(body, tmp_path, None, None)


def _artifact(store, title, **metadata):
    artifact = {"name": store.next_name(), "type": {"instanceSchema": f"title: {title}\ntype: object\n"},
                "uri": f"/x/{len(store.artifacts)}", "metadata": metadata}
    store.publish(artifact)
    return artifact


def test_store_answers_resolver_queries_like_mlmd(tmp_path):
    store = dry_run.Store(tmp_path / "metadata.json", "taxi-fare")
    assert store.query('schema_title="sluice.DataVerdict" AND state=LIVE', {}) == []
    first = _artifact(store, "sluice.DataVerdict", passed=1)
    model_a = _artifact(store, "tfx.Model")
    model_b = _artifact(store, "tfx.Model")
    _artifact(store, "tfx.ModelBlessing", blessed=1, current_model_id=model_a["name"])
    not_blessed = _artifact(store, "tfx.ModelBlessing", blessed=0, current_model_id=model_b["name"])
    second = _artifact(store, "sluice.DataVerdict", passed=1)

    assert store.query('schema_title="sluice.DataVerdict" AND state=LIVE', {})[0]["uri"] == second["uri"] != first["uri"]
    [blessing] = store.query('schema_title="tfx.ModelBlessing" AND state=LIVE AND metadata.blessed.number_value=1', {})
    assert blessing["metadata"]["current_model_id"] == model_a["name"]
    model_query = ('schema_title="tfx.Model" AND state=LIVE AND '
                   "name=\"{{$.inputs.artifacts['input'].metadata['current_model_id']}}\"")
    assert store.query(model_query, {"input": [blessing]})[0]["uri"] == model_a["uri"]
    assert store.query(model_query, {"input": [not_blessed]})[0]["uri"] == model_b["uri"]
    assert store.query(model_query, {"input": []}) == []  # no blessed model yet: no baseline
    # A blessing without current_model_id names no model.
    assert store.query(model_query, {"input": [{"metadata": {}}]}) == []
    # The store persists across dry runs in the same directory, and each pipeline sees only its own artifacts.
    assert len(dry_run.Store(tmp_path / "metadata.json", "taxi-fare").artifacts) == 6
    assert dry_run.Store(tmp_path / "metadata.json", "taxi-tips").query(
        'schema_title="sluice.DataVerdict" AND state=LIVE', {}) == []


def test_store_refuses_a_clause_it_cannot_emulate(tmp_path):
    with pytest.raises(SluiceError, match="cannot emulate"):
        dry_run.Store(tmp_path / "m.json", "p").query('schema_title="tfx.Model" AND create_time > 5', {})


def test_an_importer_publishes_its_uri_as_an_artifact_of_its_type(tmp_path):
    body = {"pipelineSpec": {
        "components": {"imp": {"executorLabel": "imp_executor", "outputDefinitions": {"artifacts": {"result": {
            "artifactType": {"instanceSchema": "title: tfx.Schema\ntype: object\n"}}}}}},
        "deploymentSpec": {"executors": {"imp_executor": {"importer": {
            "artifactUri": {"constantValue": {"stringValue": "/data/schema"}},
            "typeSchema": {"instanceSchema": "title: tfx.Schema\ntype: object\n"}}}}}}}
    store = dry_run.Store(tmp_path / "m.json", "p")
    result = dry_run._importer_task("imp", {"componentRef": {"name": "imp"}}, body, store)
    assert result.outputs["result"][0]["uri"] == "/data/schema"
    assert store.query('schema_title="tfx.Schema" AND state=LIVE', {})[0]["uri"] == "/data/schema"


def test_container_commands_keep_the_entrypoint_and_run_beam_here():
    container = {"command": ["python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"],
                 "args": ["--executor_class_path", "tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor",
                          "--json_serialized_invocation_args", "{{$}}", "--runner=DataflowRunner", "--project=p",
                          "--sdk_container_image=img"]}
    command = dry_run._command(container, '{"inputs": {}}')
    assert command[1:3] == ["-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]
    assert command[command.index("--executor_class_path") + 1] == "tfx.components.trainer.executor.GenericExecutor"
    assert command[command.index("--json_serialized_invocation_args") + 1] == '{"inputs": {}}'
    assert "--runner=DataflowRunner" not in command and "--runner=DirectRunner" in command
    assert Path(command[0]).name.startswith("python")


def test_custom_artifact_types_are_importable_by_their_type_name():
    """TFX's Kubeflow V2 entrypoint imports a custom artifact class by its schema title (= TYPE_NAME), before it
    imports the executor: a type whose name is not an import path fails every task that reads it on Vertex."""
    from tfx.orchestration.kubeflow.v2 import compiler_utils
    from tfx.utils import import_utils

    from sluice.components.data_gate import DataVerdict
    from sluice.components.export.component import ExportedModel

    for artifact_type in (DataVerdict, ExportedModel):
        assert compiler_utils._SCHEMA_TITLE_RE.fullmatch(artifact_type.TYPE_NAME)
        assert import_utils.import_class_by_path(artifact_type.TYPE_NAME) is artifact_type


def test_import_sluice_stays_free_of_tensorflow():
    import subprocess
    import sys

    code = "import sys, sluice, sluice.pipeline.cli; print('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_localize_names_the_local_data_wherever_the_compiled_data_source_is_named(tmp_path):
    """The gate's verdicts and the span window name the data source: with --dry-run-data they name that, and
    no step is left reading the compiled gs:// data."""
    from sluice.pipeline.config import parse_config
    from sluice.pipeline.kubeflow import compile_kubeflow

    raw = yaml.safe_load((CONFIGS / "taxi_fare.yaml").read_text())
    raw["data"].update(path="gs://bucket/taxi/{SPAN}/*.csv", window=2)
    out = compile_kubeflow(parse_config(raw, base_dir=str(CONFIGS)), "img:1", ROOT_URI, tmp_path / "p.json")
    body = json.loads(out.read_text())
    with pytest.raises(SluiceError) as e:  # without local data the gate's data source is unreachable
        dry_run.localize(body, tmp_path / "root", None, None)
    assert "--dry-run-data" in str(e.value)
    local = dry_run.localize(body, tmp_path / "root", "/data/spans", "{SPAN}/*.csv")
    tasks = kfp_spec.tasks(local)

    def param(task, key):
        return json.loads(tasks[task]["inputs"]["parameters"][key]["runtimeValue"]["constantValue"]["stringValue"])

    assert param("DataGate", "gate")["data_source"] == "/data/spans/{SPAN}/*.csv"
    assert param("DataGate", "gate")["span_ledger"] == f"{tmp_path / 'root'}/_span_ledger/taxi-fare"
    assert param("SpanWindow", "contract")["data_source"] == "/data/spans/{SPAN}/*.csv"
    assert "gs://bucket/taxi" not in json.dumps(local)

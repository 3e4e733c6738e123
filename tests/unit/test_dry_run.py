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


def test_image_layout_is_the_root_dockerfiles_copy_lines():
    layout = dry_run.image_layout()
    assert {"pipeline", "components", "serving", "schemas", "configs", "data", "pyproject.toml"} <= set(layout)


def _artifact(store, title, **metadata):
    artifact = {"name": store.next_name(), "type": {"instanceSchema": f"title: {title}\ntype: object\n"},
                "uri": f"/x/{len(store.artifacts)}", "metadata": metadata}
    store.publish(artifact)
    return artifact


def test_store_answers_resolver_queries_like_mlmd(tmp_path):
    store = dry_run.Store(tmp_path / "metadata.json")
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
    # The store persists across dry runs in the same directory.
    assert len(dry_run.Store(tmp_path / "metadata.json").artifacts) == 6


def test_store_refuses_a_clause_it_cannot_emulate(tmp_path):
    with pytest.raises(ValueError, match="cannot emulate"):
        dry_run.Store(tmp_path / "m.json").query('schema_title="tfx.Model" AND create_time > 5', {})


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

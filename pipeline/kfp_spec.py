"""Reading (and one fix to) the KFP v2 pipeline JSON that TFX's ``KubeflowV2DagRunner`` writes.

The file wraps a PipelineSpec: ``{"displayName", "labels", "pipelineSpec": {...}, "runtimeConfig":
{"gcsOutputDirectory": <pipeline root>}}``. Tasks live in ``pipelineSpec.root.dag.tasks``, their component
definitions in ``pipelineSpec.components``, and what runs them in ``pipelineSpec.deploymentSpec.executors``
(a container, or a resolver's MLMD query).

The fix: TFX 1.16 compiles a resolver over a custom artifact type with the query
``schema_title="tfx.Artifact"`` (``compiler_utils.get_artifact_title`` knows only its own types), while the
producer's output is registered under its own title (``sluice.DataVerdict``, from the ``instanceSchema``
TFX writes for custom types). On Vertex the query would never match: the DataGate would never find the last
passed run, and drift would silently go unchecked. ``type_resolver_queries`` names the real type.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, Iterator, List, Optional, Tuple

import yaml

GENERIC_TITLE = "tfx.Artifact"
_TITLE_CLAUSE = re.compile(r'schema_title="([^"]*)"')


def artifact_title(artifact_type: Dict[str, Any]) -> str:
    """The schema title of a compiled ``artifactType`` (``schemaTitle``, or the ``title`` of its
    ``instanceSchema`` YAML, which is how TFX writes both its own and custom types)."""
    if "schemaTitle" in artifact_type:
        return artifact_type["schemaTitle"]
    return str(yaml.safe_load(artifact_type.get("instanceSchema", "")).get("title", GENERIC_TITLE))


def tasks(body: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    return body["pipelineSpec"]["root"]["dag"]["tasks"]


def component_of(body: Dict[str, Any], task: Dict[str, Any]) -> Dict[str, Any]:
    return body["pipelineSpec"]["components"][task["componentRef"]["name"]]


def executor_of(body: Dict[str, Any], task: Dict[str, Any]) -> Dict[str, Any]:
    label = component_of(body, task)["executorLabel"]
    return body["pipelineSpec"]["deploymentSpec"]["executors"][label]


def resolver_queries(body: Dict[str, Any]) -> Iterator[Tuple[str, str, Dict[str, Any], Dict[str, Any]]]:
    """``(task name, output key, query, compiled output artifact type)`` for every resolver query."""
    for name, task in tasks(body).items():
        executor = executor_of(body, task)
        if "resolver" not in executor:
            continue
        outputs = component_of(body, task).get("outputDefinitions", {}).get("artifacts", {})
        for key, query in executor["resolver"]["outputArtifactQueries"].items():
            yield name, key, query, outputs[key]["artifactType"]


def type_resolver_queries(body: Dict[str, Any]) -> List[str]:
    """Rewrite every resolver query that asks for the generic ``tfx.Artifact`` to ask for the type its output
    really has. Returns ``task.key`` of each query changed."""
    changed = []
    for name, key, query, artifact_type in resolver_queries(body):
        title = artifact_title(artifact_type)
        if title != GENERIC_TITLE and f'schema_title="{GENERIC_TITLE}"' in query["filter"]:
            query["filter"] = query["filter"].replace(f'schema_title="{GENERIC_TITLE}"', f'schema_title="{title}"')
            changed.append(f"{name}.{key}")
    return changed


def queried_title(query: Dict[str, Any]) -> str:
    match = _TITLE_CLAUSE.search(query["filter"])
    return match.group(1) if match else ""


def upstream(task: Dict[str, Any]) -> List[str]:
    """The tasks ``task`` waits for: its ``dependentTasks`` and every producer of an input artifact."""
    producers = [a["taskOutputArtifact"]["producerTask"] for a in task.get("inputs", {}).get("artifacts", {}).values()
                 if "taskOutputArtifact" in a]
    return sorted(set(task.get("dependentTasks", [])) | set(producers))


def topological_order(body: Dict[str, Any]) -> List[str]:
    """Task names in an order where every task comes after the tasks it depends on (stable by name)."""
    graph = tasks(body)
    done: List[str] = []
    pending = sorted(graph)
    while pending:
        ready = [t for t in pending if all(d in done for d in upstream(graph[t]))]
        if not ready:
            raise ValueError(f"the pipeline's task graph has a cycle among {pending}")
        done += ready
        pending = [t for t in pending if t not in ready]
    return done


def json_parameter(task: Dict[str, Any], key: str) -> Optional[Dict[str, Any]]:
    """A task's constant string parameter ``key`` parsed as a JSON object (a contract), None when it is not one."""
    value = task.get("inputs", {}).get("parameters", {}).get(key, {}).get("runtimeValue", {}) \
        .get("constantValue", {}).get("stringValue")
    try:
        parsed = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None
